import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from statsmodels.stats.multitest import multipletests

from personalization_assets.stats import holm_adjust
from personalization_assets.stats.validation import holm_familywise_error_rate


@pytest.mark.parametrize(
    "pvalues",
    [
        [0.01, 0.04, 0.03, 0.005],
        [0.2, 0.2, 0.01, 0.9, 0.04, 0.04],  # ties
        [0.5, 0.6, 0.99],  # capped at 1
        [1e-12],
    ],
)
def test_equals_statsmodels_holm(pvalues):
    expected = multipletests(pvalues, method="holm")[1]
    np.testing.assert_allclose(holm_adjust(pvalues), expected, rtol=1e-12)


def test_nan_is_not_a_family_member():
    pvalues = np.array([0.01, np.nan, 0.04, 0.03, np.nan])
    adjusted = holm_adjust(pvalues)
    assert np.isnan(adjusted[[1, 4]]).all()
    expected = multipletests([0.01, 0.04, 0.03], method="holm")[1]
    np.testing.assert_allclose(adjusted[[0, 2, 3]], expected, rtol=1e-12)


def test_all_nan_and_empty_inputs():
    assert np.isnan(holm_adjust([np.nan, np.nan])).all()
    assert holm_adjust([]).shape == (0,)


def test_each_row_of_a_2d_array_is_one_family():
    families = np.array([[0.01, 0.04, 0.03], [0.2, np.nan, 0.001], [0.5, 0.02, 0.9]])
    adjusted = holm_adjust(families, axis=1)
    for row, family in zip(adjusted, families, strict=True):
        np.testing.assert_array_equal(row, holm_adjust(family))
    np.testing.assert_array_equal(holm_adjust(families.T, axis=0), adjusted.T)


@given(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=30))
def test_adjusted_values_are_bounded_and_preserve_order(pvalues):
    raw = np.array(pvalues)
    adjusted = holm_adjust(raw)
    assert np.all(adjusted >= raw) and np.all(adjusted <= 1.0)
    order = np.argsort(raw, kind="stable")
    assert np.all(np.diff(adjusted[order]) >= 0)
    assert adjusted.min() == pytest.approx(min(1.0, raw.min() * raw.size))


@pytest.mark.parametrize("n_per_arm, rate", [(2000, 0.2), (400, 0.05)])
def test_familywise_error_rate_with_three_arms_against_a_shared_control_simulated(n_per_arm, rate):
    assert holm_familywise_error_rate(4000, n_per_arm, rate, n_treatments=3, alpha=0.05, seed=21) <= 0.06
