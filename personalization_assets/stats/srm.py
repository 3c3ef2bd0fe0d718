"""Sample-ratio mismatch (SRM): do the observed arm sizes fit the configured allocation?

Pearson's chi-square goodness-of-fit test of the observed counts O_i against the expected
counts E_i = N · w_i / Σw (N = Σ O_i):

    chi2 = Σ (O_i - E_i)² / E_i,   df = (number of arms with w_i > 0) - 1

A tiny p-value means the assignment or the data pipeline is broken (customers lost or
duplicated in one arm), and the experiment's lift estimates cannot be trusted. The conventional
flag threshold is p < 0.001: SRM is checked on every run, so a strict threshold keeps false
alarms rare while real mismatches on thousands of customers give p-values far below it.

An arm with weight 0 that nevertheless has customers is a certain mismatch (chi2 = inf, p = 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.special import (
    chdtrc,  # chi2.sf(x, df) is chdtrc(df, x), without importing scipy.stats
)

DEFAULT_SRM_THRESHOLD = 0.001


@dataclass(frozen=True)
class SrmResult:
    chi2: float
    p_value: float
    flagged: bool
    expected: dict[str, float]
    observed: dict[str, int]
    degrees_of_freedom: int = 0


def srm_chi2(observed, weights) -> tuple[np.ndarray, np.ndarray]:
    """Chi-square statistic and p-value for arm counts ``observed[..., k]`` against ``weights[k]``.

    Vectorized over leading axes (one row per simulated experiment). NaN where no customer
    was observed; p = 1 with a single positive-weight arm (nothing to compare).
    """
    observed = np.asarray(observed, dtype=float)
    weights = np.asarray(weights, dtype=float)
    if weights.ndim != 1 or observed.shape[-1] != weights.shape[0]:
        raise ValueError("observed must have one count per weight along its last axis")
    if (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"weights must be non-negative with a positive sum, got {weights}")

    allocated = weights > 0
    total = observed.sum(axis=-1)
    expected = total[..., np.newaxis] * (weights[allocated] / weights.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        statistic = np.sum((observed[..., allocated] - expected) ** 2 / expected, axis=-1)
    degrees_of_freedom = int(allocated.sum()) - 1
    if degrees_of_freedom > 0:
        pvalue = chdtrc(degrees_of_freedom, statistic)
    else:
        pvalue = np.ones_like(statistic)

    leaked = observed[..., ~allocated].sum(axis=-1) > 0
    statistic = np.where(leaked, np.inf, statistic)
    pvalue = np.where(leaked, 0.0, pvalue)
    empty = total <= 0
    return np.where(empty, np.nan, statistic), np.where(empty, np.nan, pvalue)


def presence_chi2(listed, sent) -> tuple[np.ndarray, np.ndarray]:
    """Do the arms lose engagement rows at the same rate? Pearson's chi-square test of homogeneity
    of the 2 x k table (listed, not listed) x arm, df = k - 1 over the arms with customers:

        chi2 = Σ_arm [(L_a - s_a p̄)² / (s_a p̄) + (M_a - s_a (1 - p̄))² / (s_a (1 - p̄))]

    with L_a of the s_a sent customers listed, M_a = s_a - L_a, p̄ = Σ L / Σ s. Vectorized over
    leading axes (one row per simulated experiment). Every customer listed (or none), or fewer
    than two arms with customers, gives chi2 = 0, p = 1: nothing was lost unevenly.
    """
    statistic, degrees_of_freedom = _presence_statistic(listed, sent)
    p_value = np.where(degrees_of_freedom > 0, chdtrc(np.maximum(degrees_of_freedom, 1), statistic), 1.0)
    return statistic, p_value


def _presence_statistic(listed, sent) -> tuple[np.ndarray, np.ndarray]:
    """`presence_chi2`'s statistic and degrees of freedom per leading row; both 0 where there is
    nothing to test (every customer listed or none, or fewer than two arms with customers)."""
    listed, sent = np.asarray(listed, dtype=float), np.asarray(sent, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = listed.sum(axis=-1, keepdims=True) / sent.sum(axis=-1, keepdims=True)
        expected_listed, expected_missing = sent * share, sent * (1.0 - share)
        terms = (listed - expected_listed) ** 2 / expected_listed + (sent - listed - expected_missing) ** 2 / expected_missing
    degrees_of_freedom = (sent > 0).sum(axis=-1) - 1
    testable = (degrees_of_freedom > 0) & (share[..., 0] > 0) & (share[..., 0] < 1)
    return np.where(testable, np.where(sent > 0, terms, 0.0).sum(axis=-1), 0.0), np.where(testable, degrees_of_freedom, 0)


def stratified_presence_test(listed: np.ndarray, sent: np.ndarray) -> tuple[float, float]:
    """`presence_chi2` within each stratum (rows: segments; columns: arms), summed: the strata's
    chi-squares and their degrees of freedom, one test of whether the arms lost rows unevenly
    inside any stratum (rows lost more in one stratum than another are not a mismatch). p = 1
    where no stratum has anything to test."""
    statistic, degrees_of_freedom = _presence_statistic(listed, sent)
    total, df = float(np.sum(statistic)), int(np.sum(degrees_of_freedom))
    return total, float(chdtrc(df, total)) if df > 0 else 1.0


def srm_test(
    counts: Mapping[str, int],
    weights: Mapping[str, float],
    threshold: float = DEFAULT_SRM_THRESHOLD,
) -> SrmResult:
    """Test observed arm counts against configured allocation weights.

    Arms configured in ``weights`` but absent from ``counts`` count as 0 customers. An arm in
    ``counts`` that has no configured weight is a configuration error and raises ValueError.
    """
    unknown = sorted(set(counts) - set(weights))
    if unknown:
        raise ValueError(f"arms {unknown} have counts but no configured weight")
    arms = list(weights)
    observed = np.array([counts.get(arm, 0) for arm in arms], dtype=float)
    weight_vector = np.array([weights[arm] for arm in arms], dtype=float)
    statistic, pvalue = srm_chi2(observed, weight_vector)
    expected = observed.sum() * weight_vector / weight_vector.sum()
    return SrmResult(
        chi2=float(statistic),
        p_value=float(pvalue),
        flagged=bool(pvalue < threshold),
        expected={arm: float(e) for arm, e in zip(arms, expected, strict=True)},
        observed={arm: int(counts.get(arm, 0)) for arm in arms},
        degrees_of_freedom=int((weight_vector > 0).sum()) - 1,
    )


def stratified_srm_test(counts: np.ndarray, weights: np.ndarray, arms: list[str], threshold: float = DEFAULT_SRM_THRESHOLD) -> SrmResult:
    """SRM when each stratum (a segment under adaptive allocation) has its own weights: the sum
    over strata of each stratum's Pearson chi-square, ``counts[s, k]`` against
    ``n_s · weights[s, k] / Σ_k weights[s, k]``, with df = Σ_s (arms with weight in s - 1) over the
    strata with customers. Pooling the arm counts instead would hide a stratum given another's
    weights. ``expected`` and ``observed`` are per arm, summed over the strata."""
    counts, weights = np.asarray(counts, dtype=float), np.asarray(weights, dtype=float)
    shares = weights / weights.sum(axis=1, keepdims=True)
    expected = counts.sum(axis=1, keepdims=True) * shares
    allocated = shares > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(allocated & (expected > 0), (counts - expected) ** 2 / expected, 0.0)
    populated = counts.sum(axis=1) > 0
    degrees_of_freedom = int(np.sum(np.where(populated, allocated.sum(axis=1) - 1, 0)))
    statistic = float(terms.sum())
    p_value = float(chdtrc(degrees_of_freedom, statistic)) if degrees_of_freedom > 0 else 1.0
    if (counts[~allocated] > 0).any():
        statistic, p_value = np.inf, 0.0
    if not populated.any():
        statistic, p_value = np.nan, np.nan
    return SrmResult(chi2=statistic, p_value=p_value, flagged=bool(p_value < threshold),
                     expected={arm: float(e) for arm, e in zip(arms, expected.sum(axis=0), strict=True)},
                     observed={arm: int(c) for arm, c in zip(arms, counts.sum(axis=0), strict=True)},
                     degrees_of_freedom=degrees_of_freedom)
