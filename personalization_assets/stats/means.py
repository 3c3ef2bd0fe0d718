"""Comparison of a continuous metric's means (revenue per recipient) of a treatment arm against control.

Like `proportions.py`, every function broadcasts, so one call compares many pairs. Inputs are
per-arm means ``m``, population standard deviations ``s`` (the spread of the customers' values,
divisor n) and sizes ``n``; ``_c`` is control, ``_t`` is treatment.

- absolute lift      ``m_t - m_c``
- Welch's t-test     ``t = (m_t - m_c) / sqrt(v_t / n_t + v_c / n_c)`` with the unbiased variances
                     ``v = s² n / (n - 1)`` and the Welch–Satterthwaite degrees of freedom
                     ``ν = (v_t/n_t + v_c/n_c)² / ((v_t/n_t)² / (n_t - 1) + (v_c/n_c)² / (n_c - 1))``;
                     two-sided p = ``2 F_ν(-|t|)`` (Student's t CDF, scipy.special.stdtr): the same
                     p-value as scipy.stats.ttest_ind(equal_var=False).
- relative lift      ``R - 1``, ``R = m_t / m_c``, with the delta-method interval on the log scale,
                     ``exp(log R ± t_{ν, 1-α/2} · sqrt(v_t / (n_t m_t²) + v_c / (n_c m_c²))) - 1``, so it
                     never goes below -100%; defined where both means are positive.
- chance to beat     ``Φ((m_t - m_c) / sqrt(v_t / n_t + v_c / n_c))``: the posterior probability
                     that the treatment's mean is higher under flat priors and the normal
                     approximation of each mean (a revenue mean of hundreds of customers is close
                     to normal even when single orders are heavy-tailed).

Revenue is skewed: most recipients spend nothing and a few spend a lot. The tests check the
interval's coverage on such lognormal-times-Bernoulli data, not only on normal data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, stdtr, stdtrit


@dataclass(frozen=True)
class MeanComparison:
    """Element-wise results of `compare_means`."""

    control_mean: np.ndarray
    treatment_mean: np.ndarray
    abs_lift: np.ndarray
    rel_lift: np.ndarray
    rel_lift_ci_low: np.ndarray
    rel_lift_ci_high: np.ndarray
    p_value: np.ndarray
    chance_to_beat_control: np.ndarray


def _unbiased_variance(sd, n) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n > 1, sd**2 * n / (n - 1), np.nan)


def welch_degrees_of_freedom(sd_c, n_c, sd_t, n_t) -> np.ndarray:
    """Welch–Satterthwaite degrees of freedom of the difference of two means."""
    sd_c, n_c, sd_t, n_t = (np.asarray(a, dtype=float) for a in (sd_c, n_c, sd_t, n_t))
    share_c, share_t = _unbiased_variance(sd_c, n_c) / n_c, _unbiased_variance(sd_t, n_t) / n_t
    with np.errstate(divide="ignore", invalid="ignore"):
        return (share_c + share_t) ** 2 / (share_c**2 / (n_c - 1) + share_t**2 / (n_t - 1))


def compare_means(mean_c, sd_c, n_c, mean_t, sd_t, n_t, alpha: float = 0.05) -> MeanComparison:
    """Welch's test and the log-ratio delta interval of every treatment mean against its control.

    NaN where an arm has fewer than 2 customers or both arms have no spread (p-value), and where
    a mean is not positive (relative lift and its interval; a treatment that sold nothing reads
    -100% with a lower bound of -100% and no upper bound)."""
    mean_c, sd_c, n_c, mean_t, sd_t, n_t = np.broadcast_arrays(
        *(np.asarray(a, dtype=float) for a in (mean_c, sd_c, n_c, mean_t, sd_t, n_t)))
    var_c, var_t = _unbiased_variance(sd_c, n_c), _unbiased_variance(sd_t, n_t)
    freedom = welch_degrees_of_freedom(sd_c, n_c, sd_t, n_t)
    with np.errstate(divide="ignore", invalid="ignore"):
        difference_se = np.sqrt(var_t / n_t + var_c / n_c)
        statistic = (mean_t - mean_c) / difference_se
        tested = np.isfinite(statistic) & (freedom > 0)
        p_value = np.where(tested, 2.0 * stdtr(np.where(tested, freedom, 1.0), -np.abs(np.where(tested, statistic, 0.0))), np.nan)
        chance = np.where(tested, ndtr(np.where(tested, statistic, 0.0)), np.nan)
        ratio = mean_t / mean_c
        log_se = np.sqrt(var_t / (n_t * mean_t**2) + var_c / (n_c * mean_c**2))
        critical = stdtrit(np.where(freedom > 0, freedom, 1.0), 1.0 - alpha / 2.0)
        defined = (mean_c > 0) & (mean_t > 0) & np.isfinite(log_se) & (freedom > 0)
        low = np.where(defined, np.expm1(np.log(ratio) - critical * log_se), np.nan)
        high = np.where(defined, np.expm1(np.log(ratio) + critical * log_se), np.nan)
    # A treatment that sold nothing against a control that did: -100%; the log-ratio interval has
    # no upper bound there (log 0), so only its lower bound, -100%, is given.
    nothing_sold = (mean_t == 0) & (mean_c > 0) & (n_t > 1)
    return MeanComparison(
        control_mean=mean_c, treatment_mean=mean_t, abs_lift=np.where((n_c > 0) & (n_t > 0), mean_t - mean_c, np.nan),
        rel_lift=np.where(mean_c > 0, ratio - 1.0, np.nan),
        rel_lift_ci_low=np.where(nothing_sold, -1.0, low), rel_lift_ci_high=high,
        p_value=p_value, chance_to_beat_control=chance,
    )
