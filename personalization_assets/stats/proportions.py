"""Two-proportion comparison of a treatment arm against control.

Every function takes array-likes and broadcasts, so one call compares many (treatment, control)
pairs at once: the experiment table, and the Monte Carlo validation, never loop over comparisons
in Python. Inputs are success counts ``x`` and sample sizes ``n``; ``_c`` is control, ``_t`` is
treatment. Undefined quantities (an empty arm, a zero control rate) come out as NaN, never raise.

Formulas (p = x / n, per arm):

- absolute lift          ``p_t - p_c``
- relative lift          ``R - 1`` with ``R = p_t / p_c``
- delta-method variance  ``Var(R) ≈ Var(p_t) / p_c² + p_t² · Var(p_c) / p_c⁴``,
                         ``Var(p) = p (1 - p) / n`` (kept as ``rel_lift_se``, a spread to read,
                         not the interval)
- pooled z-test          ``z = (p_t - p_c) / sqrt(p̄ (1 - p̄) (1/n_t + 1/n_c))``,
                         ``p̄ = (x_t + x_c) / (n_t + n_c)``, two-sided p = ``2 Φ(-|z|)``
- score interval         the (1 - alpha) interval of R is every ratio φ the score test does not
  (Koopman 1984)         reject: ``|S(φ)| ≤ z_{1-alpha/2}`` with
                         ``S(φ) = (p_t - φ p_c) / sqrt(p̃_t (1 - p̃_t) / n_t + φ² p̃_c (1 - p̃_c) / n_c)``,
                         where ``p̃_c`` and ``p̃_t = φ p̃_c`` are the maximum-likelihood rates under
                         the constraint ``p_t = φ p_c`` (a quadratic's root, Farrington and Manning
                         1990). At φ = 1 they are the pooled rate, so ``S(1)`` is the pooled z
                         statistic: the interval excludes a lift of 0 exactly when the z-test
                         rejects at alpha. φ ≥ 0, so the lift's interval never goes below -100%,
                         and it has width whenever an arm has customers (0 successes in the
                         treatment arm gives [-100%, upper bound > -100%]).
- exact fallback         Fisher's exact test on the 2×2 table when any expected cell count
                         under independence is below 5, where the z-test's normal
                         approximation is poor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# scipy.special, not scipy.stats (a third of the import time): norm.sf(x) is ndtr(-x), and the
# hypergeometric log-pmf below is scipy.stats.hypergeom's own formula.
from scipy.special import betaln, ndtr

from ._normal import two_sided_z

# Conventional rule of thumb (Cochran): the chi-square / z approximation is trusted when every
# expected cell count of the 2x2 table is at least 5.
MIN_EXPECTED_CELL_COUNT = 5.0
# R's fisher.test uses the same relative tolerance, 1 + 1e-7, on the probabilities.
_FISHER_LOG_TOLERANCE = np.log1p(1e-7)


def _as_float(*arrays) -> list[np.ndarray]:
    return [np.asarray(a, dtype=float) for a in arrays]


def rate(successes, n) -> np.ndarray:
    """Success rate x / n; NaN where n == 0."""
    successes, n = _as_float(successes, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n > 0, successes / n, np.nan)


def relative_lift(x_c, n_c, x_t, n_t) -> tuple[np.ndarray, np.ndarray]:
    """Relative lift ``p_t / p_c - 1`` and its delta-method standard error.

    Both are NaN when either arm is empty or the control rate is 0 (the ratio is undefined).
    """
    p_c, p_t = rate(x_c, n_c), rate(x_t, n_t)
    n_c, n_t = _as_float(n_c, n_t)
    with np.errstate(divide="ignore", invalid="ignore"):
        var_mean_c = p_c * (1.0 - p_c) / n_c
        var_mean_t = p_t * (1.0 - p_t) / n_t
        defined = p_c > 0
        lift = np.where(defined, p_t / p_c - 1.0, np.nan)
        variance = var_mean_t / p_c**2 + p_t**2 * var_mean_c / p_c**4
        standard_error = np.where(defined, np.sqrt(variance), np.nan)
    return lift, standard_error


def _constrained_rates(x_c, n_c, x_t, n_t, ratio) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood (p̃_c, p̃_t) under p_t = ratio · p_c (Farrington and Manning 1990)."""
    a = (n_c + n_t) * ratio
    b = -(ratio * (n_t + x_c) + x_t + n_c)
    c = x_c + x_t
    with np.errstate(divide="ignore", invalid="ignore"):
        p_c = (-b - np.sqrt(np.maximum(b * b - 4.0 * a * c, 0.0))) / (2.0 * a)
    p_c = np.clip(p_c, 0.0, 1.0)
    return p_c, np.clip(ratio * p_c, 0.0, 1.0)


def _score_statistic(x_c, n_c, x_t, n_t, ratio) -> np.ndarray:
    """S(ratio) of the module docstring: decreasing in the ratio."""
    p_c, p_t = x_c / n_c, x_t / n_t
    constrained_c, constrained_t = _constrained_rates(x_c, n_c, x_t, n_t, ratio)
    variance = constrained_t * (1.0 - constrained_t) / n_t + ratio**2 * constrained_c * (1.0 - constrained_c) / n_c
    numerator = p_t - ratio * p_c
    with np.errstate(divide="ignore", invalid="ignore"):
        statistic = numerator / np.sqrt(variance)
    # Zero variance (every customer of both arms a success, at this ratio): the sign of the numerator decides.
    with np.errstate(invalid="ignore"):
        degenerate = np.where(numerator == 0, 0.0, np.copysign(np.inf, numerator))
    return np.where(variance > 0, statistic, degenerate)


_LOG_RATIO_RANGE = (-30.0, 30.0)  # ratios from 1e-13 to 1e13: far past any two rates' ratio
_INTERVAL_BISECTION_STEPS = 60


def score_interval(x_c, n_c, x_t, n_t, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """The score (Koopman) interval of the relative lift R - 1, element-wise, by bisection on
    log φ. NaN where an arm is empty or the control has no success (the ratio is undefined);
    the lower bound is exactly -1 where the treatment has no success."""
    x_c, n_c, x_t, n_t = np.broadcast_arrays(*_as_float(x_c, n_c, x_t, n_t))
    defined = (n_c > 0) & (n_t > 0) & (x_c > 0)
    x_c, n_c, x_t, n_t = (np.where(defined, a, 1.0) for a in (x_c, n_c, x_t, n_t))
    critical = two_sided_z(alpha)

    def bound(target: float) -> np.ndarray:
        """The ratio where S crosses `target` (S decreases in φ)."""
        low, high = np.full(x_c.shape, _LOG_RATIO_RANGE[0]), np.full(x_c.shape, _LOG_RATIO_RANGE[1])
        for _ in range(_INTERVAL_BISECTION_STEPS):
            middle = (low + high) / 2.0
            above = _score_statistic(x_c, n_c, x_t, n_t, np.exp(middle)) > target
            low, high = np.where(above, middle, low), np.where(above, high, middle)
        return np.exp((low + high) / 2.0)

    lower = np.where(x_t > 0, bound(critical), 0.0)
    upper = bound(-critical)
    return np.where(defined, lower - 1.0, np.nan), np.where(defined, upper - 1.0, np.nan)


def ztest_pvalue(x_c, n_c, x_t, n_t) -> np.ndarray:
    """Two-sided p-value of the pooled two-proportion z-test (statsmodels' proportions_ztest).

    NaN when an arm is empty or the pooled rate is 0 or 1 (zero standard error).
    """
    x_c, n_c, x_t, n_t = _as_float(x_c, n_c, x_t, n_t)
    p_c, p_t = rate(x_c, n_c), rate(x_t, n_t)
    with np.errstate(divide="ignore", invalid="ignore"):
        pooled = (x_c + x_t) / (n_c + n_t)
        standard_error = np.sqrt(pooled * (1.0 - pooled) * (1.0 / n_c + 1.0 / n_t))
        z = np.where(standard_error > 0, (p_t - p_c) / standard_error, np.nan)
    return 2.0 * ndtr(-np.abs(z))


def min_expected_cell_count(x_c, n_c, x_t, n_t) -> np.ndarray:
    """Smallest expected count of the 2×2 (arm × success/failure) table under independence.

    The smallest expected cell is (smallest row total) × (smallest column total) / N.
    """
    x_c, n_c, x_t, n_t = _as_float(x_c, n_c, x_t, n_t)
    total = n_c + n_t
    successes = x_c + x_t
    smallest_column = np.minimum(successes, total - successes)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, np.minimum(n_c, n_t) * smallest_column / total, np.nan)


def needs_exact_test(x_c, n_c, x_t, n_t) -> np.ndarray:
    """True where both arms are non-empty and some expected cell count is below 5."""
    n_c, n_t = _as_float(n_c, n_t)
    expected = min_expected_cell_count(x_c, n_c, x_t, n_t)
    return (n_c > 0) & (n_t > 0) & (expected < MIN_EXPECTED_CELL_COUNT)


def _hypergeom_logpmf(k, total, good, draws) -> np.ndarray:
    """scipy.stats.hypergeom.logpmf(k, total, good, draws): its formula, -inf outside the support."""
    bad = total - good
    with np.errstate(divide="ignore", invalid="ignore"):
        log_pmf = (
            betaln(good + 1, 1) + betaln(bad + 1, 1) + betaln(total - draws + 1, draws + 1)
            - betaln(k + 1, good - k + 1) - betaln(draws - k + 1, bad - draws + k + 1) - betaln(total + 1, 1)
        )
    inside = (k >= np.maximum(0, draws - bad)) & (k <= np.minimum(good, draws))
    return np.where(inside, log_pmf, -np.inf)


def fisher_pvalue(x_c, n_c, x_t, n_t) -> np.ndarray:
    """Two-sided Fisher exact p-value of each 2×2 table; NaN where an arm is empty.

    Given the margins, the treatment's success count k is hypergeometric; the p-value sums
    the probabilities of every k no more likely than the observed one (the rule of
    scipy.stats.fisher_exact and R's fisher.test). Vectorized: each comparison's support is
    laid out on one padded row, so many small-count comparisons cost one array pass.
    """
    x_c, n_c, x_t, n_t = np.broadcast_arrays(*_as_float(x_c, n_c, x_t, n_t))
    pvalues = np.full(x_c.shape, np.nan)
    valid = (n_c > 0) & (n_t > 0)
    if not valid.any():
        return pvalues
    x_c, n_c, x_t, n_t = (a[valid].astype(np.int64)[:, np.newaxis] for a in (x_c, n_c, x_t, n_t))
    total, successes = n_c + n_t, x_c + x_t
    lowest = np.maximum(0, successes - n_c)
    highest = np.minimum(successes, n_t)
    support = lowest + np.arange(int((highest - lowest).max()) + 1)
    log_pmf = _hypergeom_logpmf(support, total, successes, n_t)
    observed_log_pmf = _hypergeom_logpmf(x_t, total, successes, n_t)
    # Relative tolerance for "as likely as observed": tables tied in exact arithmetic
    # (e.g. mirror images when n_c == n_t) differ by rounding in log space.
    as_extreme = (support <= highest) & (log_pmf <= observed_log_pmf + _FISHER_LOG_TOLERANCE)
    pvalues[valid] = np.minimum(np.where(as_extreme, np.exp(log_pmf), 0.0).sum(axis=1), 1.0)
    return pvalues


def two_proportion_pvalue(x_c, n_c, x_t, n_t) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided p-value: pooled z-test, or Fisher's exact test where counts are small.

    Returns (p_value, used_exact_test).
    """
    x_c, n_c, x_t, n_t = np.broadcast_arrays(*_as_float(x_c, n_c, x_t, n_t))
    exact = needs_exact_test(x_c, n_c, x_t, n_t)
    pvalues = ztest_pvalue(x_c, n_c, x_t, n_t)
    if exact.any():
        pvalues = np.asarray(pvalues, dtype=float).copy()
        pvalues[exact] = fisher_pvalue(x_c[exact], n_c[exact], x_t[exact], n_t[exact])
    return pvalues, exact


@dataclass(frozen=True)
class ProportionComparison:
    """Element-wise results of comparing treatment arms with their controls."""

    control_rate: np.ndarray
    treatment_rate: np.ndarray
    abs_lift: np.ndarray
    rel_lift: np.ndarray
    rel_lift_se: np.ndarray
    rel_lift_ci_low: np.ndarray
    rel_lift_ci_high: np.ndarray
    p_value: np.ndarray
    used_exact_test: np.ndarray


def compare_proportions(x_c, n_c, x_t, n_t, alpha: float = 0.05) -> ProportionComparison:
    """Compare treatment with control: rates, lifts, the score interval and two-sided p-value.

    The p-value is reported as NaN wherever the relative lift is undefined (empty arm or zero
    control rate): every result row is read as "this relative lift, this evidence", and a
    p-value next to a missing lift would let a comparison be flagged significant with no
    effect size to act on.
    """
    control_rate, treatment_rate = rate(x_c, n_c), rate(x_t, n_t)
    lift, standard_error = relative_lift(x_c, n_c, x_t, n_t)
    ci_low, ci_high = score_interval(x_c, n_c, x_t, n_t, alpha)
    pvalues, exact = two_proportion_pvalue(x_c, n_c, x_t, n_t)
    pvalues = np.where(np.isnan(lift), np.nan, pvalues)
    return ProportionComparison(
        control_rate=control_rate,
        treatment_rate=treatment_rate,
        abs_lift=treatment_rate - control_rate,
        rel_lift=lift,
        rel_lift_se=standard_error,
        rel_lift_ci_low=ci_low,
        rel_lift_ci_high=ci_high,
        p_value=pvalues,
        used_exact_test=exact,
    )


def wilson_interval(successes, n, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Wilson's score interval of one rate, at (1 - alpha); NaN where n == 0."""
    successes, n = _as_float(successes, n)
    z = two_sided_z(alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(n > 0, successes / n, np.nan)
        centre = (successes + z**2 / 2) / (n + z**2)
        half = z * np.sqrt(np.maximum(successes * (n - successes) / n, 0.0) + z**2 / 4) / (n + z**2)
    low, high = np.where(n > 0, centre - half, np.nan), np.where(n > 0, centre + half, np.nan)
    return np.minimum(low, p), np.maximum(high, p)


def difference_interval(x_c, n_c, x_t, n_t, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Newcombe's hybrid score interval (his method 10) of ``p_t - p_c`` at (1 - alpha), from the
    two Wilson intervals: good at the small rates of unsubscribes and complaints, where the Wald
    interval is not. Equals statsmodels' ``confint_proportions_2indep(method="newcomb")``."""
    p_c, p_t = rate(x_c, n_c), rate(x_t, n_t)
    low_c, high_c = wilson_interval(x_c, n_c, alpha)
    low_t, high_t = wilson_interval(x_t, n_t, alpha)
    difference = p_t - p_c
    return (difference - np.sqrt((p_t - low_t) ** 2 + (high_c - p_c) ** 2),
            difference + np.sqrt((high_t - p_t) ** 2 + (p_c - low_c) ** 2))
