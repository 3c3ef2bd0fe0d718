"""The vectorized paths a million-customer wave takes give the results of the simple ones.

Joins as row positions agree with `pandas.merge`; the hash encoded in one pass agrees with the
documented per-string algorithm; the statistics' scipy.special functions agree with scipy.stats.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from personalization_assets.experiment.assignment import (
    stable_hash64,
    stable_hashes64,
    unit_interval,
    unit_intervals,
)
from personalization_assets.experiment.joins import left_join_rows, take
from personalization_assets_tests.experiment.test_assignment import reference_hash

# --- joins ---------------------------------------------------------------------------------------


def merged_rows(keys, lookup) -> np.ndarray:
    """The row of `lookup` for each key, by pandas.merge (validate one_to_one)."""
    left = pd.DataFrame({"k": keys, "order": np.arange(len(keys))})
    right = pd.DataFrame({"k": lookup, "row": np.arange(len(lookup))})
    merged = left.merge(right, on="k", how="left", validate="one_to_one").sort_values("order")
    return merged["row"].fillna(-1).astype(int).to_numpy()


@pytest.mark.parametrize("seed", range(5))
def test_left_join_rows_agrees_with_merge(seed):
    rng = np.random.default_rng(seed)
    universe = np.array([f"C{i:05d}" for i in range(500)], dtype=object)
    keys = rng.permutation(universe)[: rng.integers(0, 400)]
    lookups = [rng.permutation(universe)[: rng.integers(0, 500)] for _ in range(2)]
    rows = left_join_rows(keys, *lookups)
    for lookup, found in zip(lookups, rows):
        assert np.array_equal(found, merged_rows(keys, lookup))


def test_identical_keys_join_in_place():
    keys = np.array(["a", "b", "c"], dtype=object)
    (rows,) = left_join_rows(keys, keys.copy())
    assert rows.tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    ("keys", "lookup", "side"),
    [(["a", "a"], ["a", "b"], "left"), (["a", "b"], ["b", "b"], "right"), (["a", "a"], ["a", "a"], "left")],
)
def test_repeated_keys_raise_like_a_one_to_one_merge(keys, lookup, side):
    with pytest.raises(pd.errors.MergeError, match=side):
        left_join_rows(np.array(keys, dtype=object), np.array(lookup, dtype=object))


def test_take_fills_missing_rows():
    values = np.array([1.5, 2.5])
    assert take(values, np.array([1, -1, 0]), np.nan).tolist()[0::2] == [2.5, 1.5]
    assert np.isnan(take(values, np.array([1, -1, 0]), np.nan)[1])
    assert take(np.array(["x"], dtype=object), np.array([-1, 0]), None).tolist() == [None, "x"]
    assert take(np.array([], dtype=float), np.array([-1]), 0.0).tolist() == [0.0]


# --- the hash --------------------------------------------------------------------------------------


def test_one_pass_encoding_matches_the_documented_algorithm():
    values = ["C0000001", "", "a\x00b", "\x00", "Ünïcødé-客户", "x" * 70, "C1", "C0000002"]
    hashed = stable_hash64(pd.Series(values, dtype=object), "salt")
    assert [int(h) for h in hashed] == [reference_hash(v, "salt") for v in values]


def test_equal_length_ids_and_mixed_lengths_agree():
    same = [f"C{i:07d}" for i in range(1000)]
    mixed = [*same, "C1"]
    assert np.array_equal(stable_hash64(np.array(same, dtype=object), "s"), stable_hash64(np.array(mixed, dtype=object), "s")[:-1])
    assert [int(h) for h in stable_hash64(np.array(same[:3], dtype=object), "s")] == [reference_hash(v, "s") for v in same[:3]]


def test_non_text_ids_hash_as_their_text():
    assert np.array_equal(stable_hash64(pd.Series([12, 3.5], dtype=object), "s"), stable_hash64(pd.Series(["12", "3.5"]), "s"))


def test_several_salts_at_once():
    ids = pd.Series([f"C{i}" for i in range(2000)])
    salts = ["a", "b", "c"]
    for hashed, salt in zip(stable_hashes64(ids, salts), salts):
        assert np.array_equal(hashed, stable_hash64(ids, salt))
    for draws, salt in zip(unit_intervals(ids, salts), salts):
        assert np.array_equal(draws, unit_interval(ids, salt))


# --- scipy.special in place of scipy.stats -------------------------------------------------------


def test_special_functions_equal_scipy_stats():
    from scipy import stats

    from personalization_assets.stats import bayes, power, proportions, srm
    from personalization_assets.stats._normal import two_sided_z

    for alpha in (0.001, 0.01, 0.05, 0.2):
        assert two_sided_z(alpha) == float(stats.norm.ppf(1 - alpha / 2))
    x_c, n_c = np.array([10, 0, 50, 3]), np.array([100, 0, 100, 40])
    x_t, n_t = np.array([18, 5, 50, 9]), np.array([100, 10, 100, 41])
    with np.errstate(divide="ignore", invalid="ignore"):
        p_c, p_t = x_c / n_c, x_t / n_t
        pooled = (x_c + x_t) / (n_c + n_t)
        z = (p_t - p_c) / np.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n_t))
    assert np.array_equal(proportions.ztest_pvalue(x_c, n_c, x_t, n_t), 2.0 * stats.norm.sf(np.abs(z)), equal_nan=True)
    from scipy.integrate import quad
    integral, _ = quad(lambda p: stats.beta.pdf(p, 1 + 10, 1 + 90) * stats.beta.sf(p, 1 + 18, 1 + 82), 0, 1, epsabs=1e-12)
    assert float(bayes.chance_to_beat_control(10, 100, 18, 100)) == pytest.approx(integral, abs=1e-9)
    assert power._z_power(0.8) == float(stats.norm.ppf(0.8))
    statistic, pvalue = srm.srm_chi2(np.array([[100, 120, 90]]), np.array([1.0, 1.0, 1.0]))
    assert pvalue[0] == stats.chi2.sf(statistic[0], 2)

    rng = np.random.default_rng(0)
    total = rng.integers(2, 60, 200)
    good = (rng.random(200) * total).astype(int)
    draws = (rng.random(200) * total).astype(int)
    k = np.arange(-2, 62)[np.newaxis, :]
    ours = proportions._hypergeom_logpmf(k, total[:, None], good[:, None], draws[:, None])
    theirs = stats.hypergeom.logpmf(k, total[:, None], good[:, None], draws[:, None])
    assert np.array_equal(ours, theirs)
