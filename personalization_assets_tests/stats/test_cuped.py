import numpy as np
import pandas as pd
import pytest

from personalization_assets.stats.cuped import (
    cuped_relative_lift,
    group_moments,
    pooled_theta,
)
from personalization_assets.stats.proportions import compare_proportions
from personalization_assets.stats.validation import cuped_ci_validation


@pytest.fixture(scope="module")
def two_arm_customers() -> pd.DataFrame:
    rng = np.random.default_rng(41)
    n = 6000
    arm = rng.integers(0, 2, n)
    historical_open_rate = rng.beta(1, 4, n)
    historical_click_rate = historical_open_rate * rng.beta(2, 5, n)
    probability = np.clip(historical_open_rate * np.where(arm == 1, 1.15, 1.0), 0, 1)
    return pd.DataFrame(
        {
            "arm": arm,
            "opened": (rng.random(n) < probability).astype(float),
            "historical_open_rate": historical_open_rate,
            "historical_click_rate": historical_click_rate,
        }
    )


COLUMNS = ["opened", "historical_open_rate", "historical_click_rate"]


def test_group_moments_equal_pandas_groupby(two_arm_customers):
    moments = group_moments(two_arm_customers["arm"], two_arm_customers[COLUMNS], 2)
    grouped = two_arm_customers.groupby("arm")[COLUMNS]
    np.testing.assert_array_equal(moments.n, grouped.size())
    np.testing.assert_allclose(moments.mean, grouped.mean().to_numpy(), rtol=1e-12)
    for arm in (0, 1):
        expected_cov = grouped.get_group(arm).cov(ddof=0).to_numpy()
        np.testing.assert_allclose(moments.cov[arm], expected_cov, rtol=1e-9, atol=1e-15)


def test_group_moments_ignore_negative_codes_and_keep_empty_groups():
    moments = group_moments(np.array([0, -1, 0, 2]), np.array([1.0, 50.0, 3.0, 5.0]), 3)
    np.testing.assert_array_equal(moments.n, [2, 0, 1])
    assert moments.mean[0, 0] == 2.0 and np.isnan(moments.mean[1, 0])
    assert moments.scatter[0, 0, 0] == 2.0 and moments.scatter[1, 0, 0] == 0.0


def test_theta_equals_covariate_coefficients_of_ols_with_an_arm_indicator(two_arm_customers):
    moments = group_moments(two_arm_customers["arm"], two_arm_customers[COLUMNS], 2)
    theta = pooled_theta(moments.select([0]), moments.select([1]))[0]
    design = np.column_stack(
        [
            np.ones(len(two_arm_customers)),
            two_arm_customers["arm"],
            two_arm_customers[["historical_open_rate", "historical_click_rate"]],
        ]
    )
    coefficients, *_ = np.linalg.lstsq(design, two_arm_customers["opened"], rcond=None)
    np.testing.assert_allclose(theta, coefficients[2:], rtol=1e-8)


def test_uninformative_covariate_reproduces_the_unadjusted_delta_method(two_arm_customers):
    constant = np.column_stack([two_arm_customers["opened"], np.full(len(two_arm_customers), 0.3)])
    moments = group_moments(two_arm_customers["arm"], constant, 2)
    adjusted = cuped_relative_lift(moments.select([0]), moments.select([1]))
    successes = two_arm_customers.groupby("arm")["opened"].sum().to_numpy()
    plain = compare_proportions(successes[0], moments.n[0], successes[1], moments.n[1])
    assert adjusted.theta[0, 0] == 0.0
    assert adjusted.rel_lift[0] == pytest.approx(float(plain.rel_lift), rel=1e-10)
    assert adjusted.rel_lift_se[0] == pytest.approx(float(plain.rel_lift_se), rel=1e-10)
    # The interval is on the log scale: exp(log R ± z se / R) - 1, never below -100%.
    ratio, spread = 1 + float(plain.rel_lift), 1.959963984540054 * float(plain.rel_lift_se) / (1 + float(plain.rel_lift))
    assert adjusted.rel_lift_ci_low[0] == pytest.approx(ratio * np.exp(-spread) - 1, rel=1e-10)
    assert adjusted.rel_lift_ci_high[0] == pytest.approx(ratio * np.exp(spread) - 1, rel=1e-10)


def test_adjusted_means_are_centred_on_the_pooled_covariate_mean(two_arm_customers):
    moments = group_moments(two_arm_customers["arm"], two_arm_customers[COLUMNS], 2)
    adjusted = cuped_relative_lift(moments.select([0]), moments.select([1]))
    theta = adjusted.theta[0]
    covariates = two_arm_customers[COLUMNS[1:]].to_numpy()
    adjusted_outcome = two_arm_customers["opened"] - (covariates - covariates.mean(axis=0)) @ theta
    per_arm = adjusted_outcome.groupby(two_arm_customers["arm"]).mean()
    assert adjusted.adjusted_control_mean[0] == pytest.approx(per_arm[0], rel=1e-10)
    assert adjusted.adjusted_treatment_mean[0] == pytest.approx(per_arm[1], rel=1e-10)
    assert adjusted.rel_lift[0] == pytest.approx(per_arm[1] / per_arm[0] - 1, rel=1e-10)


def test_empty_arm_gives_nan():
    moments = group_moments(
        np.zeros(10, dtype=int), np.column_stack([np.ones(10), np.arange(10.0)]), 2
    )
    adjusted = cuped_relative_lift(moments.select([0]), moments.select([1]))
    assert np.isnan(adjusted.rel_lift[0]) and np.isnan(adjusted.rel_lift_ci_low[0])


def test_cuped_narrows_the_ci_and_keeps_coverage_simulated():
    # outcome ~ Bernoulli(historical_rate), historical_rate ~ Beta(1, 4), +10% in treatment
    result = cuped_ci_validation(
        2000, 1000, rel_lift=0.10, historical_rate_beta=(1.0, 4.0), seed=42
    )
    print(f"CUPED / unadjusted CI width, median: {result.median_width_ratio:.3f}")
    assert result.median_width_ratio < 0.95
    assert result.share_narrower > 0.95
    assert 0.935 <= result.cuped_coverage <= 0.965
