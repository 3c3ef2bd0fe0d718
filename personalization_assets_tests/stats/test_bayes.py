import numpy as np
import pytest
from scipy.stats import norm

from personalization_assets.stats.bayes import chance_to_beat_control
from personalization_assets.stats.proportions import compare_proportions


def test_is_the_normal_probability_that_the_lift_is_positive():
    assert chance_to_beat_control(0.1, 0.05) == pytest.approx(norm.cdf(2.0))
    assert chance_to_beat_control(0.0, 0.05) == pytest.approx(0.5)
    assert chance_to_beat_control(-0.1, 0.05) == pytest.approx(1.0 - norm.cdf(2.0))


def test_undefined_lift_gives_nan():
    assert np.isnan(chance_to_beat_control([np.nan, 0.1], [0.05, np.nan])).all()


def test_agrees_exactly_with_the_reported_confidence_interval():
    # chance > 1 - alpha/2 exactly when the CI's lower bound is above 0 (same lift and se)
    rng = np.random.default_rng(51)
    x_c = rng.binomial(1000, 0.2, size=5000)
    x_t = rng.binomial(1000, 0.23, size=5000)
    result = compare_proportions(x_c, 1000, x_t, 1000, alpha=0.05)
    chance = chance_to_beat_control(result.rel_lift, result.rel_lift_se)
    np.testing.assert_array_equal(chance > 0.975, result.rel_lift_ci_low > 0)
    np.testing.assert_array_equal(chance < 0.025, result.rel_lift_ci_high < 0)
    assert 0.2 < np.mean(chance > 0.975) < 0.99  # both outcomes occur: the check can fail
