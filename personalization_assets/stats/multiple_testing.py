"""Holm's step-down adjustment of p-values for a family of comparisons.

With the m non-missing p-values sorted ascending, p_(1) <= ... <= p_(m), the Holm-adjusted value
of the i-th smallest is

    p~_(i) = min(1, max_{j <= i} (m - j + 1) · p_(j))

Rejecting where p~ < alpha controls the family-wise error rate at alpha under any dependence
between the comparisons, and is never less powerful than Bonferroni. NaN p-values (undefined
comparisons) are not members of the family: they stay NaN and do not count towards m.
"""

from __future__ import annotations

import numpy as np


def holm_adjust(pvalues, axis: int = -1) -> np.ndarray:
    """Holm-adjusted p-values; each 1-D slice along ``axis`` is one family.

    A 1-D input is one family. For simulations, pass a (n_experiments, n_comparisons) array
    to adjust every experiment's family in one vectorized call.
    """
    pvalues = np.asarray(pvalues, dtype=float)
    if pvalues.ndim == 0:
        raise ValueError("holm_adjust needs an array of p-values, got a scalar")
    if pvalues.size == 0:
        return pvalues.copy()
    families = np.moveaxis(pvalues, axis, -1)
    family_shape = families.shape
    families = families.reshape(-1, family_shape[-1])

    # np.argsort puts NaN last, so the first m_row entries of each sorted row are the family.
    order = np.argsort(families, axis=1, kind="stable")
    sorted_p = np.take_along_axis(families, order, axis=1)
    family_size = np.sum(~np.isnan(families), axis=1, keepdims=True)
    rank = np.arange(families.shape[1])[np.newaxis, :]
    scaled = (family_size - rank) * sorted_p
    # NaNs sit after every real value, so the running max over real values is untouched.
    adjusted_sorted = np.minimum(np.maximum.accumulate(scaled, axis=1), 1.0)

    adjusted = np.empty_like(families)
    np.put_along_axis(adjusted, order, adjusted_sorted, axis=1)
    return np.moveaxis(adjusted.reshape(family_shape), -1, axis)
