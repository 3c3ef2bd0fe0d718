import numpy as np
import pytest
from scipy.special import betaln

from personalization_assets.stats.bayes import chance_to_beat_control


def _exact_sum(x_c, n_c, x_t, n_t):
    """P(p_t > p_c) for Beta(1 + x, 1 + n - x) posteriors by the closed-form finite sum
    (sum over i < a_t of B(a_c + i, b_c + b_t) / ((b_t + i) B(1 + i, b_t) B(a_c, b_c)))."""
    a_t, b_t, a_c, b_c = 1 + x_t, 1 + n_t - x_t, 1 + x_c, 1 + n_c - x_c
    i = np.arange(a_t)
    return float(np.exp(betaln(a_c + i, b_c + b_t) - np.log(b_t + i) - betaln(1 + i, b_t) - betaln(a_c, b_c)).sum())


@pytest.mark.parametrize("counts", [(1, 26, 0, 21), (10, 426, 27, 414), (0, 74, 3, 80), (500, 5000, 540, 5000),
                                    (3, 3, 0, 5), (2_000, 10_000, 2_100, 10_000)])
def test_equals_the_exact_beta_binomial_posterior(counts):
    assert chance_to_beat_control(*counts) == pytest.approx(_exact_sum(*counts), abs=1e-9)


@pytest.mark.parametrize("counts", [(5, 50, 100_000, 1_000_000), (200, 1000, 400_300, 2_000_000), (100_000, 1_000_000, 5, 50),
                                    (30, 300, 10_150, 100_000)])
def test_very_unequal_arms_are_as_accurate(counts):
    # The integral runs over the narrower posterior; over the wider one it was off by 5e-3 here.
    assert chance_to_beat_control(*counts) == pytest.approx(_exact_sum(*counts), abs=1e-8)


def test_zero_successes_in_a_small_arm_is_not_certainty():
    # The case: 0/21 against 1/26 was reported as 0%; the posterior says about 30%.
    chance = float(chance_to_beat_control(1, 26, 0, 21))
    assert 0.25 < chance < 0.35
    assert 0.0 < float(chance_to_beat_control(0, 10, 0, 10)) == pytest.approx(0.5)


def test_symmetric_and_nan_for_an_empty_arm():
    assert chance_to_beat_control(40, 400, 55, 420) == pytest.approx(1 - chance_to_beat_control(55, 420, 40, 400), abs=1e-9)
    assert np.isnan(chance_to_beat_control([0, 5], [0, 10], [1, 0], [10, 0])).all()


def test_agrees_with_monte_carlo_draws_from_the_posteriors():
    rng = np.random.default_rng(7)
    draws = 400_000
    p_c, p_t = rng.beta(1 + 30, 1 + 300 - 30, draws), rng.beta(1 + 42, 1 + 310 - 42, draws)
    monte_carlo = np.mean(p_t > p_c)
    assert chance_to_beat_control(30, 300, 42, 310) == pytest.approx(monte_carlo, abs=4 * np.sqrt(0.25 / draws))
