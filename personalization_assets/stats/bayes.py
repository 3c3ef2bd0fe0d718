"""Bayesian chance that a treatment beats control, from the exact Beta-Binomial posterior.

Each arm's rate has a uniform prior, Beta(1, 1), so after x successes in n sends its posterior is
Beta(1 + x, 1 + n - x), independently per arm. The chance to beat control is

    P(p_t > p_c | data) = ∫₀¹ f_c(p) · (1 - I_p(a_t, b_t)) dp

with f_c the control posterior's density and I the regularized incomplete beta function (the
treatment posterior's CDF). The integral is computed by Gauss-Legendre quadrature over the range
holding all but 1e-12 of the control posterior's mass (its quantiles from the inverse incomplete
beta), so it is accurate to about 1e-10 whatever the counts, and it is the exact posterior, not a
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
_TAIL_MASS = 5e-13  # left out of the integral on each side of the control posterior


def chance_to_beat_control(x_c, n_c, x_t, n_t) -> np.ndarray:
    """P(treatment rate > control rate | data) under independent Beta(1, 1) priors, element-wise;
    NaN where an arm is empty."""
    x_c, n_c, x_t, n_t = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (x_c, n_c, x_t, n_t)))
    defined = (n_c > 0) & (n_t > 0)
    a_c, b_c = PRIOR_SUCCESSES + x_c, PRIOR_FAILURES + n_c - x_c
    a_t, b_t = PRIOR_SUCCESSES + x_t, PRIOR_FAILURES + n_t - x_t
    low = betaincinv(a_c, b_c, _TAIL_MASS)[..., np.newaxis]
    high = betaincinv(a_c, b_c, 1.0 - _TAIL_MASS)[..., np.newaxis]
    half_width = (high - low) / 2.0
    points = low + half_width * (_QUADRATURE_NODES + 1.0)
    a_c, b_c, a_t, b_t = (v[..., np.newaxis] for v in (a_c, b_c, a_t, b_t))
    with np.errstate(divide="ignore", invalid="ignore"):
        log_density = (a_c - 1.0) * np.log(points) + (b_c - 1.0) * np.log1p(-points) - betaln(a_c, b_c)
        integrand = np.exp(log_density) * betainc(a_t, b_t, points)  # P(p_t < p) under the treatment posterior
    below = (half_width[..., 0] * (integrand * _QUADRATURE_WEIGHTS).sum(axis=-1))
    chance = np.clip(1.0 - below, 0.0, 1.0)
    return np.where(defined, chance, np.nan)
