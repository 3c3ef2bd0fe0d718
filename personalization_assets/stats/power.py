"""Power analysis for the pooled two-proportion z-test: minimum detectable lift and sample size.

For control rate p_c, treatment rate p_t = p_c (1 + lift), arm sizes n_c and n_t, and
δ = p_t - p_c, the test rejects (upper tail) when the observed difference exceeds
z_{1-α/2} · sd_0, and the observed difference is approximately N(δ, sd_1²), where

    sd_0 = sqrt(p̄ (1 - p̄) (1/n_c + 1/n_t)),  p̄ = (n_c p_c + n_t p_t) / (n_c + n_t)   (null)
    sd_1 = sqrt(p_c (1 - p_c) / n_c + p_t (1 - p_t) / n_t)                          (alternative)

so power = Φ((δ - z_{1-α/2} sd_0) / sd_1), and the design equation for power 1 - β is

    δ = z_{1-α/2} · sd_0 + z_{1-β} · sd_1.

- Sample size (arms of n_c = s_c N, n_t = s_t N for allocation shares s): both sd's scale as
  1/sqrt(N), so N = ((z_{1-α/2} sd_0(1) + z_{1-β} sd_1(1)) / δ)² in closed form (Fleiss' formula
  without continuity correction; s_c = s_t = 1 gives customers per arm).
- Minimum detectable lift (given n_c, n_t): the design equation solved for δ by bisection
  (vectorized), reported relative to p_c. Positive direction; a decrease of the same size needs
  about the same n.

Both neglect rejections in the wrong tail (probability < α/2), which is conventional and
negligible at the powers used for planning; the tests' reference power includes it.

A continuous metric (revenue per recipient: ``base_rate`` is then the control mean and ``sd``
the customers' standard deviation, taken as equal in both arms) has sd_0 = sd_1 =
sd · sqrt(1/n_c + 1/n_t), so both equations are closed-form: δ = (z_{1-α/2} + z_{1-β}) sd_1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import (  # norm.cdf and norm.ppf, without importing scipy.stats
    ndtri,
)

from ._normal import two_sided_z

_BISECTION_STEPS = 64  # halves [0, 1] down to ~5e-20, below float64 resolution of a rate


def _z_power(power: float) -> float:
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must be in (0, 1), got {power!r}")
    return float(ndtri(power))


def _null_and_alternative_sd(p_c, p_t, n_c, n_t, sd=None) -> tuple[np.ndarray, np.ndarray]:
    """sd_0 and sd_1 of the observed difference (module docstring); n may be allocation shares.
    With `sd` (a continuous metric's spread) both are sd · sqrt(1/n_c + 1/n_t)."""
    if sd is not None:
        spread = sd * np.sqrt(1.0 / n_c + 1.0 / n_t)
        return spread, spread
    pooled = (n_c * p_c + n_t * p_t) / (n_c + n_t)
    null_sd = np.sqrt(pooled * (1.0 - pooled) * (1.0 / n_c + 1.0 / n_t))
    alternative_sd = np.sqrt(p_c * (1.0 - p_c) / n_c + p_t * (1.0 - p_t) / n_t)
    return null_sd, alternative_sd


def _validate_design(base_rate: float, min_relative_lift: float, sd: float | None = None) -> None:
    if sd is not None:  # a continuous metric: a positive mean and spread, no upper bound
        if not (base_rate > 0.0 and sd > 0.0):
            raise ValueError(f"a continuous metric needs a positive mean and standard deviation, got {base_rate!r} and {sd!r}")
        if not min_relative_lift > 0.0:
            raise ValueError(f"min_relative_lift must be > 0, got {min_relative_lift!r}")
        return
    if not 0.0 < base_rate < 1.0:
        raise ValueError(f"base_rate must be in (0, 1), got {base_rate!r}")
    if not min_relative_lift > 0.0:
        raise ValueError(f"min_relative_lift must be > 0, got {min_relative_lift!r}")
    if base_rate * (1.0 + min_relative_lift) >= 1.0:
        raise ValueError(
            f"a {min_relative_lift:.0%} lift on a base rate of {base_rate} exceeds a rate of 1"
        )


def _required_total(p_c, p_t, share_c, share_t, alpha: float, power: float, sd: float | None = None) -> float:
    """Customers N such that arms of share_c·N and share_t·N reach ``power`` (unrounded)."""
    null_sd, alternative_sd = _null_and_alternative_sd(p_c, p_t, share_c, share_t, sd)
    spread = two_sided_z(alpha) * null_sd + _z_power(power) * alternative_sd
    return float((spread / (p_t - p_c)) ** 2)


def sample_size_per_arm(
    base_rate: float, min_relative_lift: float, alpha: float = 0.05, power: float = 0.8
) -> int:
    """Customers per arm (equal arms) for a two-sided test to detect ``min_relative_lift``."""
    _validate_design(base_rate, min_relative_lift)
    treatment_rate = base_rate * (1.0 + min_relative_lift)
    return math.ceil(_required_total(base_rate, treatment_rate, 1.0, 1.0, alpha, power))


def minimum_detectable_lift(
    base_rate, n_control, n_treatment, alpha: float = 0.05, power: float = 0.8, sd=None
):
    """Smallest relative lift the two-sided z-test detects with ``power`` at these arm sizes.

    Broadcasts over array inputs; a float for scalar inputs. NaN where the base rate is not
    in (0, 1), an arm is empty, or no rate up to 1 is detectable. With ``sd`` (a continuous
    metric: ``base_rate`` is its control mean) the closed form of the module docstring; NaN
    where the mean or the spread is not positive.
    """
    p_c, n_c, n_t = np.broadcast_arrays(
        *(np.asarray(a, dtype=float) for a in (base_rate, n_control, n_treatment))
    )
    z_alpha, z_beta = two_sided_z(alpha), _z_power(power)
    if sd is not None:
        spread = np.broadcast_to(np.asarray(sd, dtype=float), p_c.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            _, alternative_sd = _null_and_alternative_sd(p_c, p_c, n_c, n_t, spread)
            lift = np.where((p_c > 0) & (spread > 0) & (n_c > 0) & (n_t > 0), (z_alpha + z_beta) * alternative_sd / p_c, np.nan)
        return float(lift) if lift.ndim == 0 else lift
    valid = (p_c > 0) & (p_c < 1) & (n_c > 0) & (n_t > 0)
    p_c = np.where(valid, p_c, 0.5)  # placeholder keeps the arithmetic finite; masked below
    n_c, n_t = np.where(valid, n_c, 1.0), np.where(valid, n_t, 1.0)

    def shortfall(difference: np.ndarray) -> np.ndarray:
        """Positive once `difference` is detectable with the requested power."""
        null_sd, alternative_sd = _null_and_alternative_sd(p_c, p_c + difference, n_c, n_t)
        return difference - (z_alpha * null_sd + z_beta * alternative_sd)

    low, high = np.zeros_like(p_c), 1.0 - p_c
    attainable = shortfall(high) >= 0
    for _ in range(_BISECTION_STEPS):
        middle = (low + high) / 2.0
        detectable = shortfall(middle) >= 0
        high = np.where(detectable, middle, high)
        low = np.where(detectable, low, middle)
    lift = np.where(valid & attainable, high / p_c, np.nan)
    return float(lift) if lift.ndim == 0 else lift


@dataclass(frozen=True)
class PowerPlan:
    """How many customers an experiment needs; arms are listed control first."""

    base_rate: float
    min_relative_lift: float
    alpha: float
    alpha_per_comparison: float
    n_comparisons: int
    power: float
    weights: tuple[float, ...]
    customers_per_arm: tuple[int, ...]
    total_customers: int


def plan(
    base_rate: float,
    min_relative_lift: float,
    n_arms: int,
    weights: Sequence[float] | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    n_comparisons: int | None = None,
    sd: float | None = None,
) -> PowerPlan:
    """Total customers needed so every treatment-vs-control comparison has ``power``.

    ``n_arms`` counts control; ``weights`` are allocation weights, control first (equal when
    None; normalised). Each treatment is compared with control at
    ``alpha_per_comparison = alpha / n_comparisons`` (Bonferroni), ``n_comparisons`` defaulting
    to the n_arms - 1 treatment comparisons of one metric; pass treatments × metrics for a
    whole results table, or 1 for no correction. Holm rejects everything Bonferroni rejects,
    so this is a conservative plan for the Holm-adjusted analysis. The total is the largest
    requirement over the treatment arms (the smallest treatment arm decides it). ``sd`` plans
    a continuous metric (``base_rate`` its control mean).
    """
    _validate_design(base_rate, min_relative_lift, sd)
    if n_arms < 2:
        raise ValueError(f"an experiment needs control and at least one treatment, n_arms={n_arms}")
    weights = (1.0,) * n_arms if weights is None else tuple(float(w) for w in weights)
    if len(weights) != n_arms:
        raise ValueError(f"expected {n_arms} weights (control first), got {len(weights)}")
    if min(weights) <= 0:
        raise ValueError(f"every arm needs a positive weight, got {weights}")
    n_comparisons = n_arms - 1 if n_comparisons is None else int(n_comparisons)
    if n_comparisons < 1:
        raise ValueError(f"n_comparisons must be >= 1, got {n_comparisons}")

    shares = tuple(w / sum(weights) for w in weights)
    alpha_per_comparison = alpha / n_comparisons
    treatment_rate = base_rate * (1.0 + min_relative_lift)
    required = max(
        _required_total(base_rate, treatment_rate, shares[0], share, alpha_per_comparison, power, sd)
        for share in shares[1:]
    )
    total = math.ceil(required)
    return PowerPlan(
        base_rate=base_rate,
        min_relative_lift=min_relative_lift,
        alpha=alpha,
        alpha_per_comparison=alpha_per_comparison,
        n_comparisons=n_comparisons,
        power=power,
        weights=shares,
        customers_per_arm=tuple(math.ceil(share * total) for share in shares),
        total_customers=total,
    )
