"""Always-valid inference, so a team can read results daily while engagement arrives.

A fixed-horizon p-value is valid for one look; checking it every day and stopping at the first
p < alpha inflates the false-positive rate far above alpha. The mixture sequential probability
ratio test (mSPRT; Johari, Pekelis and Walsh, "Always valid inference", 2017) gives a p-value and
a confidence sequence that stay valid however often they are looked at.

For the difference of two proportions d = p_t - p_c, estimated by d_hat with variance
V = p_t (1 - p_t) / n_t + p_c (1 - p_c) / n_c, and a normal mixing distribution N(0, tau^2) over
the true difference, the mixture likelihood ratio against d = 0 is

    Lambda = sqrt(V / (V + tau^2)) * exp(tau^2 * d_hat^2 / (2 V (V + tau^2)))

The always-valid p-value is min(1, 1 / Lambda) (minimized over looks when a history is given),
and the (1 - alpha) confidence sequence is

    d_hat +/- sqrt(V (V + tau^2) / tau^2 * (log((V + tau^2) / V) - 2 log alpha)).

tau sets where the test is most sensitive; we centre it on the campaign's minimum lift
(tau = minimum_lift x control rate), the effect the team cares about. The relative-lift sequence
divides the difference bounds by the control rate (a plug-in, like the delta method's).

A continuous metric (revenue per recipient) is the same test on the difference of two means:
given the arms' standard deviations ``sd_t`` and ``sd_c``, V = sd_t² / n_t + sd_c² / n_c (for a
0/1 outcome sd² = p (1 - p), so the two agree).
"""

from __future__ import annotations

import numpy as np


def _variance(rate_t, n_t, rate_c, n_c, sd_t=None, sd_c=None) -> np.ndarray:
    rate_t, n_t, rate_c, n_c = (np.asarray(a, dtype=float) for a in (rate_t, n_t, rate_c, n_c))
    with np.errstate(divide="ignore", invalid="ignore"):
        if sd_t is not None and sd_c is not None:
            return np.asarray(sd_t, dtype=float) ** 2 / n_t + np.asarray(sd_c, dtype=float) ** 2 / n_c
        return rate_t * (1 - rate_t) / n_t + rate_c * (1 - rate_c) / n_c


def always_valid_p_value(rate_t, n_t, rate_c, n_c, tau, *, sd_t=None, sd_c=None) -> np.ndarray:
    """mSPRT p-value for H0: equal rates (or means, given the arms' sd), at one look (vectorized over comparisons)."""
    variance = _variance(rate_t, n_t, rate_c, n_c, sd_t, sd_c)
    tau2 = np.asarray(tau, dtype=float) ** 2
    diff = np.asarray(rate_t, dtype=float) - np.asarray(rate_c, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_lambda = 0.5 * np.log(variance / (variance + tau2)) + tau2 * diff**2 / (2 * variance * (variance + tau2))
        p = np.minimum(1.0, np.exp(-log_lambda))
    return np.where((variance > 0) & (tau2 > 0), p, np.nan)


def confidence_sequence(rate_t, n_t, rate_c, n_c, tau, alpha: float = 0.05, *, sd_t=None, sd_c=None) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) bounds on the difference p_t - p_c, valid at every look simultaneously."""
    variance = _variance(rate_t, n_t, rate_c, n_c, sd_t, sd_c)
    tau2 = np.asarray(tau, dtype=float) ** 2
    diff = np.asarray(rate_t, dtype=float) - np.asarray(rate_c, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        radius = np.sqrt(variance * (variance + tau2) / tau2 * (np.log((variance + tau2) / variance) - 2 * np.log(alpha)))
    valid = (variance > 0) & (tau2 > 0)
    return np.where(valid, diff - radius, np.nan), np.where(valid, diff + radius, np.nan)


def relative_confidence_sequence(rate_t, n_t, rate_c, n_c, tau, alpha: float = 0.05, *, sd_t=None,
                                 sd_c=None) -> tuple[np.ndarray, np.ndarray]:
    """The confidence sequence on the relative lift, the difference bounds over the control rate."""
    low, high = confidence_sequence(rate_t, n_t, rate_c, n_c, tau, alpha, sd_t=sd_t, sd_c=sd_c)
    rate_c = np.asarray(rate_c, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(rate_c > 0, low / rate_c, np.nan), np.where(rate_c > 0, high / rate_c, np.nan)
