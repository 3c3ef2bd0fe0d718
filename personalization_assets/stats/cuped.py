"""CUPED: relative lift with variance reduced by pre-experiment covariates.

For a comparison of treatment (t) with control (c), with outcome Y (0/1) and covariate vector X
(pre-experiment, e.g. historical open and click rates, so independent of the arm):

1. theta is the coefficient of the pooled within-arm OLS regression of Y on X: the outcome and
   the covariates are centred within each arm, then
       theta = S_XX⁻¹ S_XY,   S = Σ_arm Σ_i (z_i - z̄_arm)(z_i - z̄_arm)ᵀ,  z = (Y, X).
   Centring within arms keeps the treatment effect (a shift in mean Y) out of theta; it equals
   the X coefficients of the OLS fit Y ~ arm + X. A covariate that is constant (up to
   rounding) gets theta 0, and a pseudo-inverse copes with collinear covariates.
2. Adjusted outcome Y - (X - X̄)·theta, with X̄ the covariate mean of the two arms together,
   so the adjusted means stay on the rate scale:
       A_t = Ȳ_t - theta·(X̄_t - X̄),  A_c = Ȳ_c - theta·(X̄_c - X̄).
3. Relative lift A_t / A_c - 1 with a delta-method standard error, and an interval on the log
   scale, exp(log R ± z · se / R) - 1, so it never goes below -100%. Writing D = X̄_t - X̄_c and
   w_a = n_a / (n_t + n_c), A_t = Ȳ_t - w_c theta·D and A_c = Ȳ_c + w_t theta·D, so the ratio
   R = A_t / A_c is a function of the two arms' independent mean vectors m_a = (Ȳ_a, X̄_a):
       ∂R/∂m_t = (1, -h theta) / A_c,   ∂R/∂m_c = (-R, h theta) / A_c,   h = w_c + R w_t
       Var(R) ≈ ∂R/∂m_tᵀ Σ_t ∂R/∂m_t / n_t + ∂R/∂m_cᵀ Σ_c ∂R/∂m_c / n_c
   with Σ_a the (population) covariance of (Y, X) in arm a. theta is treated as known, as is
   standard: its estimation error moves the estimate only at order 1/n, below the 1/sqrt(n)
   standard error. With theta = 0 this is exactly the unadjusted delta-method variance of
   proportions.py.

Everything is computed from per-group sufficient statistics (counts, means, scatter matrices)
gathered with np.bincount, so a million customers cost a few array passes and many simulated
experiments can be analysed in one call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._normal import normal_interval


@dataclass(frozen=True)
class GroupMoments:
    """Sufficient statistics of z = (outcome, covariate_1, ..., covariate_k) per group.

    n: (g,) counts; mean: (g, d) means (NaN for an empty group); scatter: (g, d, d) sums of
    centred outer products Σ (z - z̄)(z - z̄)ᵀ, so cov = scatter / n.
    """

    n: np.ndarray
    mean: np.ndarray
    scatter: np.ndarray

    @property
    def cov(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.scatter / self.n[:, np.newaxis, np.newaxis]

    def select(self, groups) -> GroupMoments:
        """The moments of the given groups, in that order (repeats allowed)."""
        groups = np.asarray(groups, dtype=int)
        return GroupMoments(self.n[groups], self.mean[groups], self.scatter[groups])


def group_moments(group_codes, values, n_groups: int) -> GroupMoments:
    """Per-group moments of the rows of ``values`` (rows × d; column 0 is the outcome).

    Rows whose code is negative (e.g. pandas' code for an unlisted category) are ignored.
    Two passes (means, then centred products) keep precision when variances are small
    relative to the means.
    """
    codes = np.asarray(group_codes)
    # One contiguous row per variable: the per-variable passes below then read memory
    # sequentially instead of striding across a row-major (rows × d) table.
    values = np.asarray(values, dtype=float)
    variables = np.ascontiguousarray(values.reshape(len(values), -1).T)
    analysed = (codes >= 0) & (codes < n_groups)
    if not analysed.all():
        codes, variables = codes[analysed], variables[:, analysed]
    codes = codes.astype(np.intp, copy=False)

    def per_group_sum(variable: np.ndarray) -> np.ndarray:
        return np.bincount(codes, weights=variable, minlength=n_groups)

    n = np.bincount(codes, minlength=n_groups).astype(float)
    dims = variables.shape[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.column_stack([per_group_sum(v) for v in variables]) / n[:, np.newaxis]
    centred = variables - np.nan_to_num(mean).T[:, codes]
    scatter = np.empty((n_groups, dims, dims))
    for i in range(dims):
        for j in range(i, dims):
            scatter[:, i, j] = scatter[:, j, i] = per_group_sum(centred[i] * centred[j])
    return GroupMoments(n=n, mean=mean, scatter=scatter)


# A covariate whose within-arm spread is below this fraction of its magnitude is constant up
# to floating-point rounding; regressing on that rounding noise would give a meaningless theta.
_CONSTANT_COVARIATE_RELATIVE_SD = 1e-8


def pooled_theta(control: GroupMoments, treatment: GroupMoments) -> np.ndarray:
    """(m, k) CUPED coefficients, one row per (control, treatment) comparison.

    Constant covariates get a coefficient of 0 (the pseudo-inverse of their zeroed
    rows and columns), so they leave the outcome unadjusted.
    """
    scatter = control.scatter + treatment.scatter
    n_total = (control.n + treatment.n)[:, np.newaxis]
    with np.errstate(divide="ignore", invalid="ignore"):
        covariate_variance = np.diagonal(scatter, axis1=1, axis2=2)[:, 1:] / n_total
        pooled_mean = (
            np.nan_to_num(control.mean[:, 1:]) * control.n[:, np.newaxis]
            + np.nan_to_num(treatment.mean[:, 1:]) * treatment.n[:, np.newaxis]
        ) / n_total
    informative = covariate_variance > (_CONSTANT_COVARIATE_RELATIVE_SD * pooled_mean) ** 2
    both_informative = informative[:, :, np.newaxis] & informative[:, np.newaxis, :]
    covariate_scatter = np.where(both_informative, scatter[:, 1:, 1:], 0.0)
    covariate_outcome_scatter = np.where(informative, scatter[:, 1:, 0], 0.0)
    return np.einsum("mij,mj->mi", np.linalg.pinv(covariate_scatter), covariate_outcome_scatter)


@dataclass(frozen=True)
class CupedComparison:
    """Element-wise CUPED results, one entry per (control, treatment) comparison."""

    theta: np.ndarray
    adjusted_control_mean: np.ndarray
    adjusted_treatment_mean: np.ndarray
    rel_lift: np.ndarray
    rel_lift_se: np.ndarray
    rel_lift_ci_low: np.ndarray
    rel_lift_ci_high: np.ndarray


def _quadratic_form(vectors: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    return np.einsum("mi,mij,mj->m", vectors, matrices, vectors)


def cuped_relative_lift(
    control: GroupMoments, treatment: GroupMoments, alpha: float = 0.05
) -> CupedComparison:
    """CUPED-adjusted relative lift of each treatment over its control, with its delta-method
    standard error and a log-scale interval.

    ``control`` and ``treatment`` hold one group per comparison (same length). NaN where an arm
    is empty or an adjusted mean (control or treatment) is not positive.
    """
    theta = pooled_theta(control, treatment)
    n_c, n_t = control.n, treatment.n
    with np.errstate(divide="ignore", invalid="ignore"):
        weight_c = n_c / (n_c + n_t)
        weight_t = n_t / (n_c + n_t)
        shift = np.einsum("mk,mk->m", theta, treatment.mean[:, 1:] - control.mean[:, 1:])
        adjusted_t = treatment.mean[:, 0] - weight_c * shift
        adjusted_c = control.mean[:, 0] + weight_t * shift
        ratio = adjusted_t / adjusted_c

        h_theta = (weight_c + ratio * weight_t)[:, np.newaxis] * theta
        gradient_t = np.column_stack([np.ones_like(ratio), -h_theta]) / adjusted_c[:, None]
        gradient_c = np.column_stack([-ratio, h_theta]) / adjusted_c[:, None]
        variance = (
            _quadratic_form(gradient_t, treatment.cov) / n_t
            + _quadratic_form(gradient_c, control.cov) / n_c
        )
    # Both adjusted means positive: otherwise the ratio is no rate ratio (and would read below -100%).
    defined = (n_c > 0) & (n_t > 0) & (adjusted_c > 0) & (adjusted_t > 0)
    lift = np.where(defined, ratio - 1.0, np.nan)
    standard_error = np.where(defined, np.sqrt(np.maximum(variance, 0.0)), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_low, log_high = normal_interval(np.log(ratio), standard_error / ratio, alpha)
    ci_low, ci_high = np.where(defined, np.expm1(log_low), np.nan), np.where(defined, np.expm1(log_high), np.nan)
    return CupedComparison(
        theta=theta,
        adjusted_control_mean=adjusted_c,
        adjusted_treatment_mean=adjusted_t,
        rel_lift=lift,
        rel_lift_se=standard_error,
        rel_lift_ci_low=ci_low,
        rel_lift_ci_high=ci_high,
    )
