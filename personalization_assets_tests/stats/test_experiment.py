import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.stats import fisher_exact

from personalization_assets.stats import RESULT_COLUMNS, analyze_experiment, holm_adjust
from personalization_assets.stats.power import minimum_detectable_lift
from personalization_assets.stats.proportions import compare_proportions

ARMS = ["control", "urgent", "informational", "friendly"]
METRICS = {"open_rate": "opened", "click_rate": "clicked", "conversion_rate": "converted"}
COVARIATES = {
    "open_rate": ["historical_open_rate", "historical_click_rate"],
    "click_rate": ["historical_click_rate"],
}
TREATMENT_ONLY_FIELDS = [
    "abs_lift",
    "rel_lift",
    "rel_lift_ci_low",
    "rel_lift_ci_high",
    "p_value",
    "p_value_adjusted",
    "cuped_rel_lift",
    "cuped_rel_lift_ci_low",
    "cuped_rel_lift_ci_high",
    "chance_to_beat_control",
    "mde",
]


def simulate_outcomes(n_per_arm: int, open_lift: dict[str, float], seed: int) -> pd.DataFrame:
    """Customers whose outcomes follow their historical rates, times an arm's open-rate lift."""
    rng = np.random.default_rng(seed)
    arm = np.repeat(ARMS, n_per_arm)
    historical_open_rate = rng.beta(2, 8, arm.size)
    historical_click_rate = historical_open_rate * rng.beta(2, 5, arm.size)
    multiplier = pd.Series(arm).map(lambda a: 1.0 + open_lift.get(a, 0.0)).to_numpy()
    opened = rng.random(arm.size) < np.minimum(historical_open_rate * multiplier, 1.0)
    clicked = rng.random(arm.size) < historical_click_rate
    return pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(arm.size)],
            "arm": arm,
            "opened": opened.astype(int),
            "clicked": clicked.astype(int),
            "converted": (clicked & (rng.random(arm.size) < 0.2)).astype(int),
            "historical_open_rate": historical_open_rate,
            "historical_click_rate": historical_click_rate,
        }
    )


@pytest.fixture(scope="module")
def outcomes() -> pd.DataFrame:
    return simulate_outcomes(3000, {"urgent": 0.30}, seed=71)


@pytest.fixture(scope="module")
def results(outcomes) -> pd.DataFrame:
    return analyze_experiment(
        outcomes, control="control", arms=ARMS, metrics=METRICS, covariates=COVARIATES
    )


def test_one_row_per_metric_and_arm_in_order_with_the_result_columns(results):
    assert list(results.columns) == RESULT_COLUMNS
    assert list(zip(results["metric"], results["arm"], strict=True)) == [
        (m, a) for m in METRICS for a in ARMS
    ]
    assert results["n"].dtype == np.int64 and results["successes"].dtype == np.int64
    assert results["significant"].dtype == bool


def test_counts_and_rates_equal_a_pandas_groupby(outcomes, results):
    for metric, column in METRICS.items():
        grouped = outcomes.groupby("arm")[column].agg(["size", "sum", "mean"]).loc[ARMS]
        rows = results[results["metric"] == metric]
        np.testing.assert_array_equal(rows["n"], grouped["size"])
        np.testing.assert_array_equal(rows["successes"], grouped["sum"])
        np.testing.assert_allclose(rows["rate"], grouped["mean"], rtol=1e-12)
        assert (rows["control_rate"] == grouped.loc["control", "mean"]).all()


def test_treatment_rows_equal_the_array_level_comparison(results):
    treatment = results[results["arm"] != "control"]
    control = results[results["arm"] == "control"].set_index("metric").loc[treatment["metric"]]
    expected = compare_proportions(
        control["successes"].to_numpy(),
        control["n"].to_numpy(),
        treatment["successes"].to_numpy(),
        treatment["n"].to_numpy(),
    )
    np.testing.assert_allclose(treatment["rel_lift"], expected.rel_lift, rtol=1e-12)
    np.testing.assert_allclose(treatment["rel_lift_ci_low"], expected.rel_lift_ci_low, rtol=1e-12)
    np.testing.assert_allclose(treatment["p_value"], expected.p_value, rtol=1e-12)


def test_control_rows_carry_no_comparison(results):
    control = results[results["arm"] == "control"]
    assert control[TREATMENT_ONLY_FIELDS].isna().all().all()
    assert not control["significant"].any()


def test_holm_family_is_every_treatment_and_metric_of_the_call(results):
    treatment = results[results["arm"] != "control"]
    np.testing.assert_allclose(
        treatment["p_value_adjusted"], holm_adjust(treatment["p_value"].to_numpy()), rtol=1e-12
    )
    # 9 comparisons, not 3 per metric: the smallest p-value is multiplied by 9
    smallest = treatment["p_value"].idxmin()
    assert treatment.loc[smallest, "p_value_adjusted"] == pytest.approx(
        min(1.0, 9 * treatment.loc[smallest, "p_value"])
    )
    np.testing.assert_array_equal(treatment["significant"], treatment["p_value_adjusted"] < 0.05)


def test_recovers_a_large_configured_effect(results):
    urgent_open = results[(results["metric"] == "open_rate") & (results["arm"] == "urgent")].iloc[0]
    assert urgent_open["significant"]
    assert urgent_open["rel_lift_ci_low"] <= 0.30 <= urgent_open["rel_lift_ci_high"]
    assert urgent_open["cuped_rel_lift_ci_low"] <= 0.30 <= urgent_open["cuped_rel_lift_ci_high"]
    assert urgent_open["chance_to_beat_control"] > 0.999
    assert 0 < urgent_open["mde"] < 0.30


def test_cuped_columns_only_for_metrics_with_covariates(results):
    treatment = results[results["arm"] != "control"]
    with_covariates = treatment["metric"].isin(list(COVARIATES))
    assert treatment.loc[with_covariates, "cuped_rel_lift"].notna().all()
    assert treatment.loc[~with_covariates, "cuped_rel_lift"].isna().all()
    without = analyze_experiment(
        simulate_outcomes(200, {}, seed=72), control="control", arms=ARMS, metrics=METRICS
    )
    assert without["cuped_rel_lift"].isna().all()


def test_empty_arm_and_zero_control_rate_do_not_crash(outcomes):
    data = outcomes.assign(
        converted=np.where(outcomes["arm"] == "control", 0, outcomes["converted"])
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even a RuntimeWarning
        results = analyze_experiment(
            data,
            control="control",
            arms=[*ARMS, "held_out"],
            metrics=METRICS,
            covariates=COVARIATES,
        )
    held_out = results[results["arm"] == "held_out"]
    assert (held_out["n"] == 0).all()
    assert (
        held_out[["rate", "rel_lift", "p_value", "p_value_adjusted", "cuped_rel_lift", "mde"]]
        .isna()
        .all()
        .all()
    )
    assert not held_out["significant"].any()
    assert (held_out["unmeasurable_reason"] == "no customers in this arm").all()
    zero_control = results[(results["metric"] == "conversion_rate") & (results["arm"] != "control")]
    assert zero_control[["rel_lift", "p_value", "p_value_adjusted", "cuped_rel_lift", "cuped_rel_lift_ci_low"]].isna().all().all()
    assert not zero_control["significant"].any()
    measured = zero_control[zero_control["arm"] != "held_out"]
    assert measured["unmeasurable_reason"].str.startswith("no conversion_rate successes in control (0/").all()
    # The posterior is defined without a control success: never exactly 0 or 1.
    assert measured["chance_to_beat_control"].between(0, 1, inclusive="neither").all()


def test_too_few_customers_in_control_is_said_plainly(outcomes):
    tiny = pd.concat([outcomes[outcomes["arm"] == "control"].head(2), outcomes[outcomes["arm"] != "control"]])
    results = analyze_experiment(tiny, control="control", arms=ARMS, metrics=METRICS)
    treatments = results[results["arm"] != "control"]
    assert (treatments["unmeasurable_reason"] == "too few customers in control: 2").all()
    assert treatments["p_value_adjusted"].isna().all() and not treatments["significant"].any()
    assert (results.loc[results["arm"] == "control", "unmeasurable_reason"] == "").all()


def test_mde_is_at_the_alpha_that_decides(outcomes):
    results = analyze_experiment(outcomes, control="control", arms=ARMS, metrics=METRICS, alpha=0.05)
    row = results[(results["arm"] != "control")].iloc[0]
    n_comparisons = len(METRICS) * (len(ARMS) - (1 if "control" in ARMS else 0))
    control_n = int(results.loc[(results["arm"] == "control") & (results["metric"] == row["metric"]), "n"].iloc[0])
    assert row["mde"] == pytest.approx(minimum_detectable_lift(row["control_rate"], control_n, row["n"], 0.05 / n_comparisons))
    assert row["mde"] > minimum_detectable_lift(row["control_rate"], control_n, row["n"], 0.05)


def test_rows_of_unlisted_arms_are_ignored(outcomes, results):
    holdout = outcomes.head(50).assign(arm="holdout", opened=np.nan)  # never sent, no outcome
    with_holdout = analyze_experiment(
        pd.concat([outcomes, holdout]),
        control="control",
        arms=ARMS,
        metrics=METRICS,
        covariates=COVARIATES,
    )
    pd.testing.assert_frame_equal(with_holdout, results)


def test_control_is_prepended_when_not_listed_among_arms(outcomes):
    results = analyze_experiment(outcomes, control="control", arms=ARMS[1:], metrics=METRICS)
    assert list(results["arm"][:4]) == ARMS


def test_small_arms_get_fisher_exact_p_values():
    opens = {"control": 2, "urgent": 6, "informational": 1, "friendly": 4}  # of 10 each
    small = pd.DataFrame(
        [(arm, int(i < opened)) for arm, opened in opens.items() for i in range(10)],
        columns=["arm", "opened"],
    )
    results = analyze_experiment(
        small, control="control", arms=ARMS, metrics={"open_rate": "opened"}
    )
    for arm, row in results.set_index("arm").drop(index="control").iterrows():
        expected = fisher_exact([[opens[arm], 10 - opens[arm]], [2, 8]]).pvalue
        assert row["p_value"] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda df: df.assign(opened=df["opened"] * 2), "must be 0/1"),
        (lambda df: df.drop(columns="clicked"), "metric column"),
        (lambda df: df.drop(columns="historical_click_rate"), "covariate column"),
        (lambda df: df.drop(columns="arm"), "arm column"),
    ],
)
def test_invalid_tables_raise_with_the_column_named(outcomes, change, message):
    with pytest.raises(ValueError, match=message):
        analyze_experiment(
            change(outcomes), control="control", arms=ARMS, metrics=METRICS, covariates=COVARIATES
        )


def test_covariates_for_an_unknown_metric_raise(outcomes):
    with pytest.raises(ValueError, match="unknown metrics"):
        analyze_experiment(
            outcomes,
            control="control",
            arms=ARMS,
            metrics=METRICS,
            covariates={"revenue": ["historical_open_rate"]},
        )


def test_missing_covariate_values_are_filled_not_dropped(outcomes, results):
    gappy = outcomes.assign(
        historical_click_rate=outcomes["historical_click_rate"].mask(outcomes.index % 10 == 0)
    )
    gappy_results = analyze_experiment(
        gappy, control="control", arms=ARMS, metrics=METRICS, covariates=COVARIATES
    )
    assert gappy_results["cuped_rel_lift"].notna().sum() == results["cuped_rel_lift"].notna().sum()
    pd.testing.assert_series_equal(gappy_results["n"], results["n"])
