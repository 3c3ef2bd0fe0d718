"""Bayesian chance that a treatment beats control, from the exact Beta-Binomial posterior.

Each arm's rate has a uniform prior, Beta(1, 1), so after x successes in n sends its posterior is
Beta(1 + x, 1 + n - x), independently per arm. The chance to beat control is

    P(p_t > p_c | data) = ∫₀¹ f_c(p) · (1 - I_p(a_t, b_t)) dp = ∫₀¹ f_t(p) · I_p(a_c, b_c) dp

with f the posteriors' densities and I the regularized incomplete beta function (the
treatment posterior's CDF). The integral is computed by Gauss-Legendre quadrature over the range
holding all but 1e-12 of the narrower posterior's mass (the integral is written over whichever arm's
posterior is narrower, where the other's CDF is smooth; quantiles from the inverse incomplete
beta), accurate to 1e-8 in the tests (arms of 21 to 2,000,000), and it is the exact posterior, not a
normal approximation: with 0 successes in a small treatment arm it is small but not 0, and it
reaches exactly 0 or 1 only when the true value rounds there in floating point.

The prior is stated because it matters at small counts: Beta(1, 1) adds one success and one
failure to each arm. At thousands of sends per arm it is negligible.
"""

from __future__ import annotations

import numpy as np
from numpy.polynomial.legendre import leggauss
from scipy.special import betainc, betaincinv, betaln

PRIOR_SUCCESSES = 1.0
PRIOR_FAILURES = 1.0
_QUADRATURE_NODES, _QUADRATURE_WEIGHTS = leggauss(256)
_TAIL_MASS = 5e-13  # left out of the integral on each side of the posterior it runs over


def _mass_below(a_x, b_x, a_y, b_y) -> np.ndarray:
    """P(Y < X) = ∫ f_X(p) · I_p(a_y, b_y) dp for X ~ Beta(a_x, b_x), Y ~ Beta(a_y, b_y), by
    Gauss-Legendre quadrature over the range holding all but 1e-12 of X's mass."""
    low = betaincinv(a_x, b_x, _TAIL_MASS)[..., np.newaxis]
    high = betaincinv(a_x, b_x, 1.0 - _TAIL_MASS)[..., np.newaxis]
    half_width = (high - low) / 2.0
    points = low + half_width * (_QUADRATURE_NODES + 1.0)
    a_x, b_x, a_y, b_y = (v[..., np.newaxis] for v in (a_x, b_x, a_y, b_y))
    with np.errstate(divide="ignore", invalid="ignore"):
        log_density = (a_x - 1.0) * np.log(points) + (b_x - 1.0) * np.log1p(-points) - betaln(a_x, b_x)
        integrand = np.exp(log_density) * betainc(a_y, b_y, points)
    return half_width[..., 0] * (integrand * _QUADRATURE_WEIGHTS).sum(axis=-1)


def _spread(a, b) -> np.ndarray:
    return np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1.0)))


def chance_to_beat_control(x_c, n_c, x_t, n_t) -> np.ndarray:
    """P(treatment rate > control rate | data) under independent Beta(1, 1) priors, element-wise;
    NaN where an arm is empty. The integral runs over the narrower of the two posteriors, where
    the other's CDF is smooth, so very unequal arms are as accurate as equal ones."""
    x_c, n_c, x_t, n_t = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (x_c, n_c, x_t, n_t)))
    defined = (n_c > 0) & (n_t > 0)
    a_c, b_c = PRIOR_SUCCESSES + x_c, PRIOR_FAILURES + np.maximum(n_c - x_c, 0.0)
    a_t, b_t = PRIOR_SUCCESSES + x_t, PRIOR_FAILURES + np.maximum(n_t - x_t, 0.0)
    control_narrower = _spread(a_c, b_c) <= _spread(a_t, b_t)
    chance = np.where(control_narrower, 1.0 - _mass_below(a_c, b_c, a_t, b_t), _mass_below(a_t, b_t, a_c, b_c))
    return np.where(defined, np.clip(chance, 0.0, 1.0), np.nan)
