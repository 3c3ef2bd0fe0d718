import math

import numpy as np
import pytest
from scipy.stats import chisquare

from personalization_assets.stats import SrmResult, srm_test
from personalization_assets.stats.validation import srm_false_flag_rate

EQUAL_WEIGHTS = {"control": 0.25, "urgent": 0.25, "informational": 0.25, "friendly": 0.25}


def test_clearly_unbalanced_split_is_flagged():
    result = srm_test(
        {"control": 5000, "urgent": 5400, "informational": 5000, "friendly": 5000}, EQUAL_WEIGHTS
    )
    assert result.flagged and result.p_value < 0.001


def test_balanced_split_is_not_flagged():
    result = srm_test(
        {"control": 5010, "urgent": 4990, "informational": 5030, "friendly": 4970}, EQUAL_WEIGHTS
    )
    assert not result.flagged and result.p_value > 0.5


def test_statistic_equals_scipy_chisquare_with_unequal_weights():
    counts = {"control": 5200, "a": 2350, "b": 2450}
    weights = {"control": 2.0, "a": 1.0, "b": 1.0}
    result = srm_test(counts, weights)
    expected = chisquare([5200, 2350, 2450], f_exp=[5000, 2500, 2500])
    assert isinstance(result, SrmResult)
    assert result.chi2 == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue)
    assert result.expected == {"control": 5000.0, "a": 2500.0, "b": 2500.0}
    assert result.observed == counts


def test_threshold_decides_the_flag():
    counts = {"control": 100, "urgent": 130}
    weights = {"control": 1, "urgent": 1}
    assert srm_test(counts, weights).p_value == pytest.approx(0.0479, abs=1e-4)
    assert not srm_test(counts, weights).flagged
    assert srm_test(counts, weights, threshold=0.05).flagged


def test_configured_arm_without_customers_counts_as_zero():
    result = srm_test({"control": 500, "urgent": 500, "informational": 500}, EQUAL_WEIGHTS)
    assert result.observed["friendly"] == 0 and result.flagged


def test_customers_in_a_zero_weight_arm_are_a_certain_mismatch():
    result = srm_test(
        {"control": 500, "urgent": 500, "paused": 3}, {"control": 1, "urgent": 1, "paused": 0}
    )
    assert math.isinf(result.chi2) and result.p_value == 0.0 and result.flagged


def test_arm_without_a_configured_weight_is_a_configuration_error():
    with pytest.raises(ValueError, match="no configured weight"):
        srm_test({"control": 10, "typo": 10}, {"control": 1, "urgent": 1})


def test_no_customers_is_not_flagged():
    result = srm_test({}, EQUAL_WEIGHTS)
    assert math.isnan(result.p_value) and not result.flagged


def test_false_flag_rate_of_correct_randomisation_is_small_simulated():
    assert srm_false_flag_rate(20000, 10000, [1, 1, 1, 1], threshold=0.001, seed=31) <= 0.003


def test_engagement_rows_test_flags_rarely_without_loss_and_sees_a_10_percent_loss_simulated():
    from personalization_assets.stats.validation import engagement_mismatch_flag_rate

    assert engagement_mismatch_flag_rate(4000, 5000, 4, 0.98, 0.0, 0.001, seed=31) <= 0.004
    assert engagement_mismatch_flag_rate(2000, 5000, 4, 0.98, 0.10, 0.001, seed=32) >= 0.99


def test_engagement_rows_test_equals_scipy_chi2_contingency():
    from scipy.stats import chi2_contingency

    from personalization_assets.stats.srm import presence_chi2

    listed, sent = np.array([4900, 4880, 4410, 4950]), np.array([5000, 4990, 5010, 5000])
    statistic, p_value = presence_chi2(listed, sent)
    expected = chi2_contingency(np.vstack([listed, sent - listed]), correction=False)
    assert float(statistic) == pytest.approx(expected.statistic) and float(p_value) == pytest.approx(expected.pvalue)
    assert tuple(map(float, presence_chi2([10, 20], [10, 20]))) == (0.0, 1.0)  # everyone listed: nothing lost
