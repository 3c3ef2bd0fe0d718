"""Monte Carlo checks of the engine's calibration (simulated data, seeded).

Each function simulates many independent experiments at once with numpy and analyses them with
the same array-level functions the pipeline uses, so a check over thousands of experiments
costs a few vectorized calls. Used by the tests (which assert ranges) and by
benchmarks/stats_validation.py (which prints the numbers quoted in docs/statistics.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import betainc

from .cuped import cuped_relative_lift, group_moments
from .multiple_testing import holm_adjust
from .proportions import compare_proportions
from .srm import presence_chi2, srm_chi2


def _binomial_arms(
    rng: np.random.Generator,
    n_experiments: int,
    n_per_arm: int,
    control_rate: float,
    treatment_rates: Sequence[float],
) -> tuple[np.ndarray, np.ndarray]:
    """Success counts: control (n_experiments, 1) and treatments (n_experiments, n_treatments)."""
    x_c = rng.binomial(n_per_arm, control_rate, size=(n_experiments, 1))
    x_t = rng.binomial(n_per_arm, treatment_rates, size=(n_experiments, len(treatment_rates)))
    return x_c, x_t


def rejection_rate(
    n_experiments: int,
    n_per_arm: int,
    control_rate: float,
    rel_lift: float = 0.0,
    alpha: float = 0.05,
    seed: int = 0,
) -> float:
    """Share of simulated two-arm experiments whose p-value is below alpha.

    With rel_lift = 0 (an A/A test) this is the false-positive rate, which should be ≈ alpha;
    otherwise it is the empirical power.
    """
    rng = np.random.default_rng(seed)
    x_c, x_t = _binomial_arms(
        rng, n_experiments, n_per_arm, control_rate, [control_rate * (1.0 + rel_lift)]
    )
    p_value = compare_proportions(x_c, n_per_arm, x_t, n_per_arm, alpha).p_value
    return float(np.mean(p_value < alpha))


def holm_familywise_error_rate(
    n_experiments: int,
    n_per_arm: int,
    control_rate: float,
    n_treatments: int = 3,
    alpha: float = 0.05,
    seed: int = 0,
) -> float:
    """Share of simulated A/A/../A experiments with any Holm-adjusted rejection.

    All treatments share one control, as in the pipeline, so the p-values are correlated.
    """
    rng = np.random.default_rng(seed)
    x_c, x_t = _binomial_arms(
        rng, n_experiments, n_per_arm, control_rate, [control_rate] * n_treatments
    )
    p_value = compare_proportions(x_c, n_per_arm, x_t, n_per_arm, alpha).p_value
    return float(np.mean((holm_adjust(p_value, axis=1) < alpha).any(axis=1)))


def relative_lift_ci_coverage(
    n_experiments: int,
    n_per_arm: int,
    control_rate: float,
    rel_lift: float,
    alpha: float = 0.05,
    seed: int = 0,
) -> float:
    """Share of simulated experiments whose interval (the score interval) contains the true relative lift."""
    rng = np.random.default_rng(seed)
    x_c, x_t = _binomial_arms(
        rng, n_experiments, n_per_arm, control_rate, [control_rate * (1.0 + rel_lift)]
    )
    result = compare_proportions(x_c, n_per_arm, x_t, n_per_arm, alpha)
    covered = (result.rel_lift_ci_low <= rel_lift) & (rel_lift <= result.rel_lift_ci_high)
    return float(np.mean(covered))


def srm_false_flag_rate(
    n_experiments: int,
    n_customers: int,
    weights: Sequence[float],
    threshold: float = 0.001,
    seed: int = 0,
) -> float:
    """Share of correctly randomised simulated experiments that the SRM test flags."""
    rng = np.random.default_rng(seed)
    shares = np.asarray(weights, dtype=float) / np.sum(weights)
    counts = rng.multinomial(n_customers, shares, size=n_experiments)
    _, p_value = srm_chi2(counts, shares)
    return float(np.mean(p_value < threshold))


def engagement_mismatch_flag_rate(
    n_experiments: int,
    n_per_arm: int,
    n_arms: int = 4,
    listed_share: float = 0.98,
    lost_in_one_arm: float = 0.0,
    threshold: float = 0.001,
    seed: int = 0,
) -> float:
    """Share of simulated waves whose engagement-rows test flags: each arm's export lists a
    Binomial(n, listed_share) of its sent customers, one arm loses a further `lost_in_one_arm` of
    its rows. With 0 extra loss it is the false-flag rate; otherwise the power to see the loss."""
    rng = np.random.default_rng(seed)
    shares = np.full(n_arms, listed_share)
    shares[-1] *= 1.0 - lost_in_one_arm
    listed = rng.binomial(n_per_arm, shares, size=(n_experiments, n_arms))
    _, p_value = presence_chi2(listed, np.full(n_arms, float(n_per_arm)))
    return float(np.mean(p_value < threshold))


def relative_lift_interval_disagreements(n_experiments: int, seed: int = 0, alpha: float = 0.05) -> tuple[int, int]:
    """(comparisons where the interval's side of zero and the z-test's verdict disagree, comparisons
    decided by the z-test), over simulated experiments of random sizes (60 to 3,000 per arm),
    rates (0.02 to 0.5) and lifts (0 or +30%)."""
    rng = np.random.default_rng(seed)
    n_c, n_t = rng.integers(60, 3000, n_experiments), rng.integers(60, 3000, n_experiments)
    rates = rng.uniform(0.02, 0.5, n_experiments)
    x_c, x_t = rng.binomial(n_c, rates), rng.binomial(n_t, rates * rng.choice([1.0, 1.3], n_experiments))
    result = compare_proportions(x_c, n_c, x_t, n_t, alpha)
    decided_by_z = ~result.used_exact_test & (x_c > 0)
    excludes_zero = (result.rel_lift_ci_low > 0) | (result.rel_lift_ci_high < 0)
    return int(np.sum(excludes_zero[decided_by_z] != (result.p_value[decided_by_z] < alpha))), int(decided_by_z.sum())


@dataclass(frozen=True)
class CupedValidation:
    """CUPED vs unadjusted relative-lift CIs over the same simulated experiments."""

    true_rel_lift: float
    median_width_ratio: float  # CUPED CI width / unadjusted CI width
    share_narrower: float
    cuped_coverage: float
    unadjusted_coverage: float


def _true_relative_lift_capped(a: float, b: float, rel_lift: float) -> float:
    """E[min(h (1 + lift), 1)] / E[h] - 1 for h ~ Beta(a, b): the lift the simulation induces.

    Uses ∫_0^u h f(h) dh = E[h] · I_u(a + 1, b) with I the regularized incomplete beta.
    """
    multiplier = 1.0 + rel_lift
    cap = min(1.0, 1.0 / multiplier)
    mean = a / (a + b)
    capped_mean = multiplier * mean * betainc(a + 1, b, cap) + (1.0 - betainc(a, b, cap))
    return float(capped_mean / mean - 1.0)


def cuped_ci_validation(
    n_experiments: int,
    n_per_arm: int,
    rel_lift: float,
    historical_rate_beta=(1.0, 4.0),
    alpha: float = 0.05,
    seed: int = 0,
    max_rows_per_batch: int = 2_000_000,
) -> CupedValidation:
    """Simulate customers whose outcome ~ Bernoulli(historical_rate × (1 + lift in treatment)).

    historical_rate ~ Beta(a, b) per customer is the CUPED covariate. Experiments are analysed
    in batches (one np.bincount pass per batch) to bound memory.
    """
    rng = np.random.default_rng(seed)
    a, b = historical_rate_beta
    true_lift = _true_relative_lift_capped(a, b, rel_lift)
    experiments_per_batch = max(1, max_rows_per_batch // (2 * n_per_arm))
    cuped_widths, plain_widths, cuped_hits, plain_hits = [], [], [], []
    for start in range(0, n_experiments, experiments_per_batch):
        batch = min(experiments_per_batch, n_experiments - start)
        # group code = 2 * experiment + arm (0 control, 1 treatment), n_per_arm rows each
        codes = np.repeat(np.arange(2 * batch), n_per_arm)
        is_treatment = (codes % 2).astype(bool)
        historical_rate = rng.beta(a, b, size=codes.size)
        probability = np.minimum(historical_rate * np.where(is_treatment, 1.0 + rel_lift, 1.0), 1.0)
        outcome = (rng.random(codes.size) < probability).astype(float)

        moments = group_moments(codes, np.column_stack([outcome, historical_rate]), 2 * batch)
        control, treatment = (
            moments.select(range(0, 2 * batch, 2)),
            moments.select(range(1, 2 * batch, 2)),
        )
        cuped = cuped_relative_lift(control, treatment, alpha)
        successes = np.rint(moments.mean[:, 0] * moments.n)
        plain = compare_proportions(successes[0::2], control.n, successes[1::2], treatment.n, alpha)
        for hits, widths, low, high in (
            (cuped_hits, cuped_widths, cuped.rel_lift_ci_low, cuped.rel_lift_ci_high),
            (plain_hits, plain_widths, plain.rel_lift_ci_low, plain.rel_lift_ci_high),
        ):
            hits.append((low <= true_lift) & (true_lift <= high))
            widths.append(high - low)
    cuped_width, plain_width = np.concatenate(cuped_widths), np.concatenate(plain_widths)
    return CupedValidation(
        true_rel_lift=true_lift,
        median_width_ratio=float(np.median(cuped_width / plain_width)),
        share_narrower=float(np.mean(cuped_width < plain_width)),
        cuped_coverage=float(np.mean(np.concatenate(cuped_hits))),
        unadjusted_coverage=float(np.mean(np.concatenate(plain_hits))),
    )
