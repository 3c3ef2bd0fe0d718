import numpy as np
import pytest
from scipy.stats import fisher_exact, norm
from statsmodels.stats import proportion as sm_proportion
from statsmodels.stats.proportion import confint_proportions_2indep

from personalization_assets.stats.proportions import (
    _score_statistic,
    compare_proportions,
    fisher_pvalue,
    min_expected_cell_count,
    needs_exact_test,
    score_interval,
    two_proportion_pvalue,
    ztest_pvalue,
)
from personalization_assets.stats.validation import (
    rejection_rate,
    relative_lift_ci_coverage,
)

# (x_c, n_c, x_t, n_t): large enough counts for the z-test branch
LARGE_COUNT_CASES = [
    (400, 2000, 440, 2000),
    (120, 1000, 150, 1200),
    (35, 500, 20, 480),
    (5000, 100000, 5200, 100000),
]


@pytest.mark.parametrize("x_c, n_c, x_t, n_t", LARGE_COUNT_CASES)
def test_ztest_pvalue_equals_statsmodels_pooled_ztest(x_c, n_c, x_t, n_t):
    _, expected = sm_proportion.proportions_ztest([x_t, x_c], [n_t, n_c])
    assert ztest_pvalue(x_c, n_c, x_t, n_t) == pytest.approx(expected, rel=1e-12)
    pvalue, exact = two_proportion_pvalue(x_c, n_c, x_t, n_t)
    assert not exact and pvalue == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("x_c, n_c, x_t, n_t", LARGE_COUNT_CASES)
def test_delta_method_se_equals_statsmodels_log_ratio_variance_times_ratio(x_c, n_c, x_t, n_t):
    # Var(R) by the delta method is R² times the variance statsmodels uses for log(R).
    result = compare_proportions(x_c, n_c, x_t, n_t)
    log_ratio = sm_proportion.test_proportions_2indep(
        x_t, n_t, x_c, n_c, compare="ratio", method="log"
    )
    assert result.rel_lift == pytest.approx(log_ratio.ratio - 1.0, rel=1e-12)
    assert result.rel_lift_se == pytest.approx(
        log_ratio.ratio * np.sqrt(log_ratio.variance), rel=1e-12
    )


@pytest.mark.parametrize("x_c, n_c, x_t, n_t", LARGE_COUNT_CASES)
def test_ci_agrees_with_statsmodels_log_ratio_ci_to_second_order(x_c, n_c, x_t, n_t):
    # exp(log R ± z s) and R (1 ± z s) differ only in terms of order (z s)².
    result = compare_proportions(x_c, n_c, x_t, n_t, alpha=0.05)
    low, high = sm_proportion.confint_proportions_2indep(
        x_t, n_t, x_c, n_c, compare="ratio", method="log"
    )
    ratio = result.rel_lift + 1.0
    second_order = ratio * (norm.ppf(0.975) * result.rel_lift_se / ratio) ** 2
    assert abs(result.rel_lift_ci_low + 1.0 - low) <= second_order
    assert abs(result.rel_lift_ci_high + 1.0 - high) <= second_order
    assert result.rel_lift_ci_low < result.rel_lift < result.rel_lift_ci_high


def test_hand_computed_relative_lift_and_its_spread():
    result = compare_proportions(400, 2000, 440, 2000, alpha=0.05)
    variance = (0.22 * 0.78 / 2000) / 0.2**2 + 0.22**2 * (0.2 * 0.8 / 2000) / 0.2**4
    assert result.control_rate == pytest.approx(0.2)
    assert result.treatment_rate == pytest.approx(0.22)
    assert result.abs_lift == pytest.approx(0.02)
    assert result.rel_lift == pytest.approx(0.1)
    assert result.rel_lift_se == pytest.approx(np.sqrt(variance))


@pytest.mark.parametrize("x_c, n_c, x_t, n_t", [(400, 2000, 440, 2000), (10, 426, 27, 414), (1, 26, 0, 21), (30, 50, 49, 50),
                                                (5, 1000, 2, 3000), (700, 7000, 0, 90)])
def test_the_interval_is_the_score_interval_of_statsmodels(x_c, n_c, x_t, n_t):
    # Koopman's score interval: statsmodels' score method for a ratio without the small-sample correction.
    low, high = confint_proportions_2indep(x_t, n_t, x_c, n_c, method="score", compare="ratio", correction=False)
    result = compare_proportions(x_c, n_c, x_t, n_t, alpha=0.05)
    assert result.rel_lift_ci_high == pytest.approx(high - 1.0, abs=1e-7)
    assert result.rel_lift_ci_low == pytest.approx(low - 1.0, abs=1e-7)


@pytest.mark.parametrize("x, n", [(10, 10), (20, 20), (0, 15)])
def test_the_interval_when_both_arms_are_all_or_no_successes(x, n):
    # Zero variance at the ratio 1: the score test does not reject a ratio it matches exactly.
    low, high = score_interval(x, n, x, n)
    if x == 0:
        assert np.isnan(low) and np.isnan(high)  # no control success: the ratio is undefined
        return
    phis = np.exp(np.linspace(-2, 2, 400_001))
    accepted = phis[np.abs(_score_statistic(float(x), float(n), float(x), float(n), phis)) <= 1.959963984540054]
    assert low == pytest.approx(accepted.min() - 1, abs=1e-4) and high == pytest.approx(accepted.max() - 1, abs=1e-4)
    assert low < 0 < high


def test_the_interval_agrees_with_the_z_test_and_stays_above_minus_100_percent():
    rng = np.random.default_rng(41)
    n_c, n_t = rng.integers(60, 3000, 20_000), rng.integers(60, 3000, 20_000)
    rates = rng.uniform(0.02, 0.5, 20_000)
    x_c, x_t = rng.binomial(n_c, rates), rng.binomial(n_t, rates * rng.choice([1.0, 1.3], 20_000))
    result = compare_proportions(x_c, n_c, x_t, n_t, alpha=0.05)
    z_test = ~result.used_exact_test & (x_c > 0)
    excludes_zero = (result.rel_lift_ci_low > 0) | (result.rel_lift_ci_high < 0)
    np.testing.assert_array_equal(excludes_zero[z_test], result.p_value[z_test] < 0.05)
    assert 0.2 < np.mean(excludes_zero[z_test]) < 0.9  # both outcomes occur: the check can fail
    assert (result.rel_lift_ci_low[x_c > 0] >= -1.0).all()
    assert (result.rel_lift_ci_high[x_c > 0] > result.rel_lift_ci_low[x_c > 0]).all()


@pytest.mark.parametrize(
    "x_c, n_c, x_t, n_t",
    [(1, 20, 6, 25), (0, 30, 4, 30), (3, 10, 9, 12), (1, 400, 6, 400), (49, 50, 45, 50)],
)
def test_small_counts_use_fisher_exact(x_c, n_c, x_t, n_t):
    assert needs_exact_test(x_c, n_c, x_t, n_t)
    pvalue, exact = two_proportion_pvalue(x_c, n_c, x_t, n_t)
    expected = fisher_exact([[x_t, n_t - x_t], [x_c, n_c - x_c]]).pvalue
    assert exact and pvalue == pytest.approx(expected, rel=1e-12)


def test_vectorized_fisher_equals_scipy_on_random_small_tables():
    rng = np.random.default_rng(14)
    n_c, n_t = rng.integers(1, 60, 300), rng.integers(1, 60, 300)
    x_c, x_t = rng.integers(0, n_c + 1), rng.integers(0, n_t + 1)
    expected = [
        fisher_exact([[t, nt - t], [c, nc - c]]).pvalue
        for c, nc, t, nt in zip(x_c, n_c, x_t, n_t, strict=True)
    ]
    np.testing.assert_allclose(fisher_pvalue(x_c, n_c, x_t, n_t), expected, rtol=1e-9)


def test_min_expected_cell_count_is_smallest_row_total_times_smallest_column_total_over_n():
    # table rows (20, 25), success column 12 of 45: smallest cell 20 * 12 / 45
    assert min_expected_cell_count(5, 20, 7, 25) == pytest.approx(20 * 12 / 45)
    assert not needs_exact_test(5, 20, 7, 25)
    assert needs_exact_test(4, 20, 6, 25)  # 20 * 10 / 45 = 4.44 < 5


def test_vectorized_call_equals_elementwise_calls_and_broadcasts():
    x_c = np.array([[400], [3]])
    x_t = np.array([[440, 380, 500], [5, 2, 4]])
    n_c, n_t = np.array([[2000], [30]]), np.array([[2000, 2000, 2100], [25, 40, 28]])
    batch = compare_proportions(x_c, n_c, x_t, n_t)
    assert batch.p_value.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            single = compare_proportions(x_c[i, 0], n_c[i, 0], x_t[i, j], n_t[i, j])
            assert batch.p_value[i, j] == pytest.approx(float(single.p_value), rel=1e-12)
            assert batch.rel_lift_ci_low[i, j] == pytest.approx(float(single.rel_lift_ci_low))
    assert batch.used_exact_test[1].all() and not batch.used_exact_test[0].any()


def test_empty_arms_and_zero_control_rate_give_nan_lift_and_pvalue():
    with np.errstate(all="raise"):  # must not even warn
        result = compare_proportions(
            [0, 10, 0, 0], [0, 100, 100, 100], [5, 0, 5, 0], [50, 0, 100, 100]
        )
    assert np.isnan(result.rel_lift).all()
    assert np.isnan(result.p_value).all()
    assert np.isnan(result.control_rate[0]) and np.isnan(result.treatment_rate[1])


def test_zero_treatment_rate_is_a_defined_minus_100_percent_lift():
    result = compare_proportions(40, 200, 0, 200)
    assert result.rel_lift == -1.0
    # The Wald-type CI degenerates at a rate of 0 (documented caveat); the p-value carries
    # the evidence.
    assert result.rel_lift_se == 0.0
    assert result.p_value < 1e-6


def test_aa_false_positive_rate_is_alpha_simulated():
    assert 0.035 <= rejection_rate(4000, 2000, 0.2, rel_lift=0.0, alpha=0.05, seed=11) <= 0.065


def test_aa_false_positive_rate_stays_at_most_alpha_when_small_counts_use_the_exact_test():
    # ~3 expected successes per arm: mostly the Fisher branch, which is conservative.
    assert rejection_rate(4000, 100, 0.03, rel_lift=0.0, alpha=0.05, seed=12) <= 0.055


@pytest.mark.parametrize("n_per_arm, rate, lift", [(2000, 0.2, 0.10), (400, 0.05, 0.0), (400, 0.05, 0.20), (100, 0.05, 0.20)])
def test_relative_lift_ci_covers_the_true_lift_95_percent_of_the_time_simulated(n_per_arm, rate, lift):
    # 4,000 simulated experiments: the Monte Carlo SE of a 0.95 coverage is 0.0034.
    assert 0.935 <= relative_lift_ci_coverage(4000, n_per_arm, rate, lift, alpha=0.05, seed=13) <= 0.965


def test_aa_false_positive_rate_at_small_n_simulated():
    assert 0.03 <= rejection_rate(4000, 400, 0.05, rel_lift=0.0, alpha=0.05, seed=14) <= 0.065
