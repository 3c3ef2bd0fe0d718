"""Revenue per recipient: Welch's test, the log-ratio delta interval, CUPED on past spend and the
continuous MDE, against scipy and by simulation on skewed, zero-inflated revenue (most recipients
buy nothing; orders are lognormal)."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from personalization_assets.stats import (
    analyze_experiment,
    minimum_detectable_lift,
    plan,
)
from personalization_assets.stats.means import compare_means

ALPHA = 0.05


def revenue(rng: np.random.Generator, size, buy_rate: float, order_mean: float, spread: float = 0.8) -> np.ndarray:
    """Zero-inflated lognormal revenue: a purchase with `buy_rate`, of mean `order_mean`."""
    bought = rng.random(size) < buy_rate
    orders = order_mean * np.exp(spread * rng.standard_normal(size) - spread**2 / 2)
    return np.where(bought, orders, 0.0)


def moments(values: np.ndarray, axis: int = -1):
    return values.mean(axis=axis), values.std(axis=axis), values.shape[axis]


@pytest.mark.parametrize("seed", range(5))
def test_p_value_is_welchs_as_scipy_computes_it(seed):
    rng = np.random.default_rng(seed)
    control, treatment = revenue(rng, 800, 0.1, 60.0), revenue(rng, 500, 0.13, 65.0)
    result = compare_means(*moments(control), *moments(treatment))
    expected = stats.ttest_ind(treatment, control, equal_var=False)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-9)
    assert result.rel_lift == pytest.approx(treatment.mean() / control.mean() - 1)
    assert result.abs_lift == pytest.approx(treatment.mean() - control.mean())


def test_the_relative_lift_interval_covers_the_true_lift_on_skewed_revenue():
    """2,000 simulated experiments of 4,000 recipients per arm, 8% buying, +10% true lift."""
    rng = np.random.default_rng(11)
    replicates, n, true_lift = 2000, 4000, 0.10
    control = revenue(rng, (replicates, n), 0.08, 50.0)
    treatment = revenue(rng, (replicates, n), 0.08 * (1 + true_lift), 50.0)
    result = compare_means(*moments(control), *moments(treatment), alpha=ALPHA)
    covered = (result.rel_lift_ci_low <= true_lift) & (true_lift <= result.rel_lift_ci_high)
    assert 0.935 <= covered.mean() <= 0.965, covered.mean()


def test_an_aa_test_rejects_at_about_alpha():
    rng = np.random.default_rng(12)
    replicates, n = 4000, 2000
    control, treatment = revenue(rng, (replicates, n), 0.08, 50.0), revenue(rng, (replicates, n), 0.08, 50.0)
    p = compare_means(*moments(control), *moments(treatment)).p_value
    assert 0.04 <= (p < ALPHA).mean() <= 0.06, (p < ALPHA).mean()


def test_nothing_sold_in_treatment_reads_minus_100_percent_and_undefined_where_control_sold_nothing():
    result = compare_means([40.0, 0.0], [10.0, 0.0], [100, 100], [0.0, 5.0], [0.0, 1.0], [100, 100])
    assert result.rel_lift[0] == pytest.approx(-1.0) and result.rel_lift_ci_low[0] == -1.0
    assert np.isnan(result.rel_lift[1]) and np.isnan(result.rel_lift_ci_low[1])


def _revenue_experiment(rng, n_per_arm: int, lift: float) -> pd.DataFrame:
    """Recipients whose revenue depends on their past spend (the CUPED covariate)."""
    arms = np.repeat(["control", "friendly"], n_per_arm)
    past_spend = rng.gamma(2.0, 100.0, len(arms))
    buy_rate = np.clip(0.02 + past_spend / 4000, 0, 1) * np.where(arms == "friendly", 1 + lift, 1.0)
    bought = rng.random(len(arms)) < buy_rate
    amount = np.where(bought, past_spend * 0.4 * np.exp(0.5 * rng.standard_normal(len(arms)) - 0.125), 0.0)
    return pd.DataFrame({"arm": arms, "revenue": amount, "past_spend": past_spend})


def test_analyze_experiment_compares_revenue_by_its_means_and_counts_purchasers():
    frame = _revenue_experiment(np.random.default_rng(3), 3000, 0.2)
    table = analyze_experiment(frame, control="control", arms=["control", "friendly"], metrics={"revenue_per_recipient": "revenue"},
                               covariates={"revenue_per_recipient": ["past_spend"]}, continuous=["revenue_per_recipient"])
    control, friendly = table.iloc[0], table.iloc[1]
    by_arm = frame.groupby("arm")["revenue"]
    assert friendly["rate"] == pytest.approx(by_arm.mean()["friendly"])
    assert friendly["successes"] == int((frame.loc[frame["arm"] == "friendly", "revenue"] > 0).sum())
    assert control["outcome_sd"] == pytest.approx(frame.loc[frame["arm"] == "control", "revenue"].std(ddof=0))
    welch = stats.ttest_ind(frame.loc[frame["arm"] == "friendly", "revenue"], frame.loc[frame["arm"] == "control", "revenue"],
                            equal_var=False)
    assert friendly["p_value"] == pytest.approx(welch.pvalue, rel=1e-9)
    # CUPED on past spend narrows the interval (past spend predicts revenue).
    assert (friendly["cuped_rel_lift_ci_high"] - friendly["cuped_rel_lift_ci_low"]) < (
        friendly["rel_lift_ci_high"] - friendly["rel_lift_ci_low"])
    expected_mde = (stats.norm.ppf(1 - ALPHA / 2) + stats.norm.ppf(0.8)) * control["outcome_sd"] * np.sqrt(2 / 3000) / control["rate"]
    assert friendly["mde"] == pytest.approx(expected_mde)
    assert 0 < friendly["chance_to_beat_control"] < 1


def test_cuped_on_past_spend_keeps_coverage():
    """400 simulated experiments: the CUPED interval of the revenue lift covers the true lift."""
    rng = np.random.default_rng(21)
    true_lift, covered = 0.15, []
    for _ in range(400):
        frame = _revenue_experiment(rng, 2000, true_lift)
        row = analyze_experiment(frame, control="control", arms=["control", "friendly"], metrics={"revenue_per_recipient": "revenue"},
                                 covariates={"revenue_per_recipient": ["past_spend"]}, continuous=["revenue_per_recipient"]).iloc[1]
        covered.append(row["cuped_rel_lift_ci_low"] <= true_lift <= row["cuped_rel_lift_ci_high"])
    assert 0.92 <= np.mean(covered) <= 0.975, np.mean(covered)


def test_a_revenue_column_that_is_not_a_number_is_refused():
    frame = pd.DataFrame({"arm": ["control", "friendly"] * 10, "revenue": ["12.5", "x"] * 10})
    with pytest.raises(ValueError, match="'revenue' must be a number"):
        analyze_experiment(frame, control="control", arms=["control", "friendly"], metrics={"revenue_per_recipient": "revenue"},
                           continuous=["revenue_per_recipient"])


def test_the_continuous_plan_and_mde_are_the_closed_form():
    mean, sd, lift = 5.0, 30.0, 0.1
    requirement = plan(mean, lift, n_arms=2, alpha=ALPHA, power=0.8, sd=sd)
    z = stats.norm.ppf(1 - ALPHA / 2) + stats.norm.ppf(0.8)
    assert requirement.customers_per_arm[0] == pytest.approx(z**2 * 2 * sd**2 / (mean * lift) ** 2, rel=1e-3)
    per_arm = requirement.customers_per_arm[0]
    assert minimum_detectable_lift(mean, per_arm, per_arm, ALPHA, 0.8, sd=sd) == pytest.approx(lift, rel=1e-3)
    with pytest.raises(ValueError, match="positive mean and standard deviation"):
        plan(5.0, 0.1, n_arms=2, sd=0.0)
