import numpy as np
import pytest
from scipy.special import ndtr
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize

from personalization_assets.stats import (
    minimum_detectable_lift,
    plan,
    sample_size_per_arm,
)
from personalization_assets.stats._normal import two_sided_z
from personalization_assets.stats.power import _null_and_alternative_sd
from personalization_assets.stats.validation import rejection_rate

DESIGNS = [(0.2, 0.10), (0.05, 0.20), (0.02, 0.30), (0.5, 0.05), (0.3, 0.15)]


@pytest.mark.parametrize("base_rate, lift", DESIGNS)
def test_sample_size_agrees_with_statsmodels_normal_ind_power(base_rate, lift):
    cohens_h = proportion_effectsize(base_rate * (1 + lift), base_rate)
    expected = NormalIndPower().solve_power(cohens_h, alpha=0.05, power=0.8)
    assert sample_size_per_arm(base_rate, lift) == pytest.approx(expected, rel=0.03)


@pytest.mark.parametrize("base_rate, lift", DESIGNS)
def test_mde_agrees_with_statsmodels_normal_ind_power(base_rate, lift):
    n = 5000
    cohens_h = NormalIndPower().solve_power(nobs1=n, alpha=0.05, power=0.8)
    # invert Cohen's h = 2 asin(sqrt(p_t)) - 2 asin(sqrt(p_c)) for p_t
    treatment_rate = np.sin(np.arcsin(np.sqrt(base_rate)) + cohens_h / 2) ** 2
    expected = treatment_rate / base_rate - 1
    assert minimum_detectable_lift(base_rate, n, n) == pytest.approx(expected, rel=0.03)


@pytest.mark.parametrize("base_rate, lift", DESIGNS)
def test_mde_at_the_planned_sample_size_is_the_planned_lift(base_rate, lift):
    n = sample_size_per_arm(base_rate, lift)
    assert minimum_detectable_lift(base_rate, n, n) == pytest.approx(lift, rel=1e-3)
    assert minimum_detectable_lift(base_rate, n, n) <= lift  # n is rounded up
    assert minimum_detectable_lift(base_rate, n - 1, n - 1) > lift  # and is the smallest
    assert ztest_power(base_rate, base_rate * (1 + lift), n, n) == pytest.approx(0.8, abs=2e-3)



def ztest_power(p_c, p_t, n_c, n_t, alpha: float = 0.05) -> np.ndarray:
    """Reference: power of the two-sided pooled z-test to detect p_t vs p_c with arms of n_c and n_t."""
    p_c, p_t, n_c, n_t = (np.asarray(a, dtype=float) for a in (p_c, p_t, n_c, n_t))
    null_sd, alternative_sd = _null_and_alternative_sd(p_c, p_t, n_c, n_t)
    critical = two_sided_z(alpha) * null_sd
    difference = np.abs(p_t - p_c)
    return ndtr((difference - critical) / alternative_sd) + ndtr(
        (-difference - critical) / alternative_sd
    )


def test_planned_sample_size_reaches_the_planned_power_simulated():
    n = sample_size_per_arm(0.2, 0.10)
    assert 0.77 <= rejection_rate(4000, n, 0.2, rel_lift=0.10, seed=61) <= 0.83


def test_mde_broadcasts_and_is_nan_where_undefined():
    base_rates = np.array([0.2, 0.0, 0.2, 0.95])
    mde = minimum_detectable_lift(base_rates, [1000, 1000, 0, 50], [1000, 1000, 1000, 50])
    assert mde.shape == (4,)
    assert 0 < mde[0] < 1 and np.isnan(mde[1]) and np.isnan(mde[2])
    assert np.isnan(mde[3])  # from 95%, no rate up to 1 is detectable with 50 + 50
    assert isinstance(minimum_detectable_lift(0.2, 1000, 1000), float)
    assert minimum_detectable_lift(0.2, 1000, 4000) < minimum_detectable_lift(0.2, 1000, 1000)


def test_plan_with_two_equal_arms_and_no_correction_is_twice_the_per_arm_size():
    result = plan(0.2, 0.10, n_arms=2, n_comparisons=1)
    n = sample_size_per_arm(0.2, 0.10)
    assert abs(result.total_customers - 2 * n) <= 2
    assert (
        result.customers_per_arm == (result.total_customers // 2,) * 2
        or max(result.customers_per_arm) - n <= 1
    )


def test_plan_corrects_alpha_for_the_number_of_comparisons():
    corrected = plan(0.2, 0.10, n_arms=4)
    uncorrected = plan(0.2, 0.10, n_arms=4, n_comparisons=1)
    assert corrected.n_comparisons == 3
    assert corrected.alpha_per_comparison == pytest.approx(0.05 / 3)
    assert corrected.total_customers > uncorrected.total_customers
    assert uncorrected.total_customers == pytest.approx(4 * sample_size_per_arm(0.2, 0.10), abs=4)


def test_plan_with_unequal_weights_powers_every_comparison():
    result = plan(0.2, 0.10, n_arms=3, weights=[2, 1, 1], alpha=0.05, power=0.8)
    assert result.weights == (0.5, 0.25, 0.25)
    n_c, n_t = result.customers_per_arm[0], result.customers_per_arm[1]
    achieved = ztest_power(0.2, 0.22, n_c, n_t, alpha=result.alpha_per_comparison)
    assert 0.8 <= achieved < 0.801
    # a 2:1:1 split needs fewer customers than giving control only a third
    assert result.total_customers < plan(0.2, 0.10, n_arms=3).total_customers


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(base_rate=0.0, min_relative_lift=0.1, n_arms=2),
        dict(base_rate=0.2, min_relative_lift=0.0, n_arms=2),
        dict(base_rate=0.9, min_relative_lift=0.2, n_arms=2),
        dict(base_rate=0.2, min_relative_lift=0.1, n_arms=1),
        dict(base_rate=0.2, min_relative_lift=0.1, n_arms=3, weights=[1, 1]),
        dict(base_rate=0.2, min_relative_lift=0.1, n_arms=2, weights=[1, 0]),
        dict(base_rate=0.2, min_relative_lift=0.1, n_arms=2, n_comparisons=0),
        dict(base_rate=0.2, min_relative_lift=0.1, n_arms=2, power=1.0),
    ],
)
def test_plan_rejects_impossible_designs(kwargs):
    with pytest.raises(ValueError):
        plan(**kwargs)
