"""The safety gate, the lift gate and rollout recommendations, on hand-made and simulated results."""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np
import pandas as pd
import pytest

from personalization_assets.campaign.config import SimulationEffects, SimulationSettings
from personalization_assets.experiment.assignment import build_assignments
from personalization_assets.experiment.engagement import simulate_engagement
from personalization_assets.experiment.gates import (
    evaluate_lift_gate,
    rollout_recommendations,
)
from personalization_assets.experiment.joins import analysis_frame
from personalization_assets.experiment.planning import plan_campaign
from personalization_assets.experiment.results import (
    OVERALL,
    RESULTS_COLUMNS,
    campaign_lift_gate,
    compute_results,
    engagement_mismatch,
    sample_ratio_mismatch,
)
from personalization_assets.safety.gate import evaluate_safety_gate
from personalization_assets_tests.pure_fixtures import (
    campaign,
    catalog,
    customer_segments,
    measured_customers,
    variants_frame,
    verdicts_frame,
)

WAVE = "2026-01-05"
NO_EFFECT = {"control": 1.0, "urgent": 1.0, "informational": 1.0, "friendly": 1.0}
FRIENDLY_WINS = {"control": 1.0, "urgent": 1.0, "informational": 1.0, "friendly": 1.5}


@lru_cache(maxsize=4)
def _simulated(n: int, effects: tuple[tuple[str, float], ...], seed: int):
    """assignments and experiment_results of one wave, built as the wave assets build them."""
    config = campaign()
    customers = customer_segments(n, seed)
    variants = variants_frame(catalog().ids)
    assignments = build_assignments(customers.assign(contact_hold=""), variants, verdicts_frame(variants), experiment_id=config.experiment_id,
                                    weights=config.arm_weights, wave=WAVE)
    settings = SimulationSettings(seed=seed, conversion_given_click=0.12, effects=SimulationEffects(default=dict(effects)))
    engagement = simulate_engagement(measured_customers(assignments, customers), settings, WAVE)
    frame = analysis_frame(assignments, engagement, customers)
    results = compute_results(frame, config, wave=WAVE, segments=catalog().ids, source="simulated")
    return assignments, results


def results_with_engagement(assignments: pd.DataFrame, engagement: pd.DataFrame, n: int, seed: int = 3) -> pd.DataFrame:
    customers = customer_segments(n, seed)
    frame = analysis_frame(assignments, engagement, customers)
    return compute_results(frame, campaign(), wave=WAVE, segments=catalog().ids, source="imported")


def simulated(n: int, effects: dict[str, float], seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    assignments, results = _simulated(n, tuple(sorted(effects.items())), seed)
    return assignments.copy(), results.copy()


def result_rows(*treatments: dict, control_n: int = 10_000, scope: str = OVERALL, metric: str = "open_rate") -> pd.DataFrame:
    """A minimal experiment_results table: control plus the given treatment rows."""
    base = {"scope": scope, "metric": metric, "rate": 0.25, "control_rate": 0.25}
    control = {**base, "arm": "control", "n": control_n, "rel_lift": np.nan, "rel_lift_ci_low": np.nan,
               "rel_lift_ci_high": np.nan, "p_value_adjusted": np.nan, "significant": False, "mde": np.nan}
    rows = [control]
    for t in treatments:
        lift = t["rel_lift"]
        rows.append({**base, "n": control_n, "rel_lift_ci_low": lift - 0.02, "rel_lift_ci_high": lift + 0.02,
                     "significant": t["p_value_adjusted"] < 0.05, **t})
    return pd.DataFrame(rows)


def lift_gate(results: pd.DataFrame, *, srm_p_value: float = 0.5, srm_flagged: bool = False, minimum_lift: float = 0.10):
    return evaluate_lift_gate(results, primary_metric="open_rate", minimum_lift=minimum_lift, alpha=0.05,
                              srm_p_value=srm_p_value, srm_flagged=srm_flagged)


# --- safety gate -------------------------------------------------------------------------------------


def test_safety_gate_counts_the_shared_control_once():
    verdicts = pd.DataFrame({
        "segment": ["s1", "s1", "s2", "s2"],
        "variant_id": ["control", "s1:friendly", "control", "s2:friendly"],
        "decision": ["approved", "approved", "approved", "blocked"],
    })
    gate = evaluate_safety_gate(verdicts, threshold=0.7)
    assert gate.n_variants == 3 and gate.n_blocked == 1
    assert gate.pass_rate == pytest.approx(2 / 3)  # counting control twice would give 3/4 and pass
    assert not gate.passed
    assert gate.blocked_variants == ("s2:friendly",)
    assert "2/3" in gate.summary() and "FAILED" in gate.summary()


def test_safety_gate_on_the_campaign_shape():
    variants = variants_frame(catalog().ids)
    gate = evaluate_safety_gate(verdicts_frame(variants, blocked={"at_risk:urgent"}), campaign().safety.pass_rate_threshold)
    n = len(catalog().ids) * len(campaign().tones) + 1
    assert gate.n_variants == n and gate.n_blocked == 1
    assert gate.passed and gate.pass_rate == pytest.approx((n - 1) / n)
    blocked = {f"{s}:urgent" for s in catalog().ids} | {"at_risk:friendly"}
    assert not evaluate_safety_gate(verdicts_frame(variants, blocked=blocked), 0.9).passed


def test_safety_gate_threshold_boundary_passes():
    verdicts = pd.DataFrame({"segment": "s", "variant_id": [f"v{i}" for i in range(10)],
                             "decision": ["approved"] * 9 + ["blocked"]})
    exactly = evaluate_safety_gate(verdicts, threshold=0.9)
    assert exactly.pass_rate == 0.9 and exactly.passed
    assert "passed" in exactly.summary()
    assert not evaluate_safety_gate(verdicts, threshold=0.91).passed
    one_more_blocked = verdicts.assign(decision=["approved"] * 8 + ["blocked"] * 2)
    assert not evaluate_safety_gate(one_more_blocked, threshold=0.9).passed


def test_safety_gate_fails_on_no_verdicts():
    gate = evaluate_safety_gate(pd.DataFrame(columns=["segment", "variant_id", "decision"]), threshold=0.0)
    assert not gate.passed and gate.n_variants == 0 and gate.pass_rate == 0.0


def test_safety_gate_treats_anything_but_approved_as_blocked():
    verdicts = pd.DataFrame({"segment": "s", "variant_id": ["a", "b", "c"], "decision": ["approved", "error", None]})
    gate = evaluate_safety_gate(verdicts, threshold=0.5)
    assert gate.blocked_variants == ("b", "c") and not gate.passed


def test_safety_gate_does_not_depend_on_row_order():
    verdicts = pd.DataFrame({
        "segment": ["s1", "s2", "s1", "s2"],
        "variant_id": ["control", "control", "s1:friendly", "s2:friendly"],
        "decision": ["approved", "blocked", "approved", "approved"],
    })
    forward = evaluate_safety_gate(verdicts, threshold=0.9)
    backward = evaluate_safety_gate(verdicts.iloc[::-1].reset_index(drop=True), threshold=0.9)
    assert (forward.passed, forward.n_blocked) == (backward.passed, backward.n_blocked)


# --- lift gate, hand-made rows -----------------------------------------------------------------------


def test_lift_below_target_is_reported_with_numbers():
    gate = lift_gate(result_rows({"arm": "friendly", "rel_lift": 0.04, "p_value_adjusted": 0.001, "mde": 0.03}))
    assert not gate.passed and gate.best_arm == "friendly"
    assert gate.failures == ("lift +4.0% below target +10%",)
    assert "lift +4.0%" in gate.summary()


def test_not_significant_is_reported_with_numbers():
    gate = lift_gate(result_rows({"arm": "urgent", "rel_lift": 0.15, "p_value_adjusted": 0.2, "mde": 0.08}))
    assert not gate.passed
    assert gate.failures == ("not significant: adjusted p 0.2 >= alpha 0.05",)


def test_underpowered_is_reported_with_mde_and_n():
    gate = lift_gate(result_rows({"arm": "urgent", "rel_lift": 0.12, "p_value_adjusted": 0.4, "mde": 0.3}, control_n=500))
    assert not gate.passed
    underpowered = [f for f in gate.failures if f.startswith("underpowered")]
    assert underpowered == ["underpowered: MDE 30% > target 10% at n=500 per arm"]
    assert "MDE" in underpowered[0] and "n=500" in underpowered[0]
    assert gate.n_per_arm == 500 and gate.mde == pytest.approx(0.3)


def test_srm_fails_an_otherwise_clear_winner():
    rows = result_rows({"arm": "friendly", "rel_lift": 0.4, "p_value_adjusted": 1e-9, "mde": 0.05})
    assert lift_gate(rows).passed
    gate = lift_gate(rows, srm_p_value=1e-5, srm_flagged=True)
    assert not gate.passed
    assert gate.failures == ("sample-ratio mismatch: p = 1e-05 < 0.001",)
    assert gate.srm_flagged and gate.srm_p_value == 1e-5


def test_best_arm_is_the_highest_overall_primary_lift():
    rows = pd.concat([
        result_rows({"arm": "urgent", "rel_lift": 0.12, "p_value_adjusted": 0.01, "mde": 0.05},
                    {"arm": "friendly", "rel_lift": 0.2, "p_value_adjusted": 0.2, "mde": 0.05}),
        result_rows({"arm": "urgent", "rel_lift": 0.9, "p_value_adjusted": 1e-9, "mde": 0.05}, scope="at_risk"),
        result_rows({"arm": "urgent", "rel_lift": 0.9, "p_value_adjusted": 1e-9, "mde": 0.05}, metric="click_rate"),
    ], ignore_index=True)
    gate = lift_gate(rows)
    assert gate.best_arm == "friendly" and gate.rel_lift == pytest.approx(0.2)
    assert not gate.passed  # the best arm is judged, not the best passing arm
    assert gate.failures == ("not significant: adjusted p 0.2 >= alpha 0.05",)


def test_no_treatment_data():
    rows = result_rows({"arm": "friendly", "rel_lift": np.nan, "p_value_adjusted": np.nan, "mde": np.nan, "n": 0})
    gate = lift_gate(rows, srm_p_value=0.0, srm_flagged=True)
    assert not gate.passed and gate.best_arm is None
    assert gate.failures[0] == "no sent customers in any treatment arm"
    assert any("sample-ratio mismatch" in f for f in gate.failures)
    assert gate.summary().startswith("no treatment arm has data")


# --- lift gate, simulated results --------------------------------------------------------------------


def test_compute_results_shape():
    _, results = simulated(40_000, FRIENDLY_WINS)
    config = campaign()
    assert list(results.columns) == list(RESULTS_COLUMNS)
    metrics = len(config.metrics.all) + len(config.guardrails.margins)  # the simulator draws the guardrails too
    assert len(results) == (1 + len(catalog().ids)) * metrics * len(config.arm_names)
    assert set(results["engagement_source"]) == {"simulated"}
    overall = results[(results["scope"] == OVERALL) & (results["metric"] == "open_rate")].set_index("arm")
    assert overall["n"].sum() == 40_000
    assert overall.loc["friendly", "rel_lift"] > 0.3
    # Always-valid columns: NaN for control; the sequence contains the fixed CI and the estimate.
    assert overall.loc["control", ["always_valid_p_value", "cs_rel_lift_low", "cs_rel_lift_high"]].isna().all()
    friendly = overall.loc["friendly"]
    assert friendly["always_valid_p_value"] < 0.05
    assert friendly["cs_rel_lift_low"] < friendly["rel_lift_ci_low"] < friendly["rel_lift"] < friendly["rel_lift_ci_high"] < friendly["cs_rel_lift_high"]


def test_clear_winner_passes():
    assignments, results = simulated(40_000, FRIENDLY_WINS)
    gate = campaign_lift_gate(results, assignments, campaign())
    assert gate.passed, gate.failures
    assert gate.best_arm == "friendly" and gate.failures == ()
    assert gate.rel_lift > campaign().minimum_lift and gate.p_value_adjusted < campaign().alpha
    assert not gate.srm_flagged
    assert gate.summary().endswith(": passed")


def test_small_experiment_without_effect_fails_as_underpowered():
    assignments, results = simulated(800, NO_EFFECT)
    gate = campaign_lift_gate(results, assignments, campaign())
    assert not gate.passed
    text = "; ".join(gate.failures)
    assert "underpowered: MDE" in text and f"n={gate.n_per_arm} per arm" in text
    assert "not significant: adjusted p" in text
    assert gate.mde > campaign().minimum_lift


def test_sample_ratio_mismatch_fails_the_gate():
    assignments, results = simulated(40_000, FRIENDLY_WINS)
    control = assignments.index[assignments["arm"] == "control"]
    lost = assignments.drop(control[: len(control) // 5])  # a fifth of control lost in the pipeline
    srm = sample_ratio_mismatch(lost, campaign())
    assert srm.flagged and srm.p_value < 0.001
    gate = campaign_lift_gate(results, lost, campaign())
    assert not gate.passed
    assert [f for f in gate.failures if f.startswith("sample-ratio mismatch: p = ")]
    assert not sample_ratio_mismatch(assignments, campaign()).flagged


def test_engagement_rows_lost_in_one_arm_fail_the_gate_true_effect_zero():
    # The case: 10% of one arm's rows dropped from the engagement export, no true effect.
    n, seed = 40_000, 3
    assignments, _ = simulated(n, NO_EFFECT, seed)
    customers = customer_segments(n, seed)
    settings = SimulationSettings(seed=seed, conversion_given_click=0.12, effects=SimulationEffects(default=NO_EFFECT))
    engagement = simulate_engagement(measured_customers(assignments, customers), settings, WAVE)
    intact = results_with_engagement(assignments, engagement, n, seed)
    assert not engagement_mismatch(intact, campaign()).flagged
    arms = assignments.set_index("customer_id").loc[engagement["customer_id"], "arm"].to_numpy()
    friendly = np.flatnonzero(arms == "friendly")
    lost_rows = friendly[: len(friendly) // 10]
    engagement.loc[lost_rows, ["opened", "clicked", "converted"]] = 0  # read as non-openers
    engagement["in_export"] = True
    engagement.loc[lost_rows, "in_export"] = False
    damaged = results_with_engagement(assignments, engagement, n, seed)
    mismatch = engagement_mismatch(damaged, campaign())
    assert mismatch.flagged and mismatch.p_value < 1e-6
    assert mismatch.observed["friendly"] == int((arms == "friendly").sum()) - len(lost_rows)
    gate = campaign_lift_gate(damaged, assignments, campaign())
    assert not gate.passed and gate.engagement_p_value == mismatch.p_value
    assert [f for f in gate.failures if f.startswith("engagement rows missing unevenly between arms: p = ")]
    # An export that lists only customers with events cannot show lost rows: the test is not run.
    from personalization_assets.campaign.config import EngagementSettings

    events_only = campaign().model_copy(update={"engagement": EngagementSettings(lists="customers_with_events")})
    assert not engagement_mismatch(damaged, events_only).flagged and not engagement_mismatch(damaged, events_only).observed


def test_a_significant_result_whose_interval_includes_zero_is_not_a_winner():
    # Fisher's exact test decides at small counts, the score interval can disagree: no rollout then.
    gate = lift_gate(result_rows({"arm": "friendly", "rel_lift": 0.5, "p_value_adjusted": 0.01, "mde": 0.05,
                                  "rel_lift_ci_low": -0.05, "rel_lift_ci_high": 1.2}))
    assert not gate.passed
    assert gate.failures == ("interval includes no lift: [-5.0%, +120.0%]",)


def test_an_unmeasurable_scope_says_why_in_plain_words():
    rows = result_rows({"arm": "friendly", "rel_lift": np.nan, "p_value_adjusted": np.nan, "mde": np.nan,
                        "unmeasurable_reason": "too few customers in control: 2"}, control_n=2)
    gate = lift_gate(rows)
    assert gate.failures == ("not measurable: too few customers in control: 2",)
    recommendation = rollout_recommendations(rows, scopes=[OVERALL], primary_metric="open_rate", minimum_lift=0.1, alpha=0.05)
    assert recommendation["reason"].iloc[0] == "no reliable winner: not measurable: too few customers in control: 2"


def test_plan_and_results_give_the_same_mde_for_the_same_campaign():
    config = campaign()
    _, results = simulated(40_000, NO_EFFECT)
    primary = results[(results["scope"] == OVERALL) & (results["metric"] == config.metrics.primary)].set_index("arm")
    control_rate, n_control = float(primary.loc["control", "rate"]), int(primary.loc["control", "n"])
    smallest = primary.drop("control")["n"].idxmin()
    # A plan for a scope whose arms have exactly the analysed sizes, at the observed control rate.
    total = n_control / config.arm_weights["control"]
    plan = plan_campaign(config, pd.Series({OVERALL: round(total)}), base_rate=control_rate)
    planned = plan.scopes.iloc[0]
    assert int(planned["control_n"]) == n_control
    from personalization_assets.stats import minimum_detectable_lift
    at_plan_sizes = minimum_detectable_lift(control_rate, n_control, int(planned["smallest_treatment_n"]),
                                            alpha=plan.requirement.alpha_per_comparison)
    assert planned["mde"] == pytest.approx(at_plan_sizes)
    # The results' MDE is at the same alpha per comparison as the plan's.
    assert float(primary.loc[smallest, "mde"]) == pytest.approx(
        minimum_detectable_lift(control_rate, n_control, int(primary.loc[smallest, "n"]), alpha=plan.requirement.alpha_per_comparison))


# --- rollout recommendations -------------------------------------------------------------------------


def supported(row: pd.Series, minimum_lift: float, alpha: float) -> bool:
    """The rollout rule restated: enough lift, significant after Holm, and not underpowered."""
    underpowered = pd.notna(row["mde"]) and row["mde"] > minimum_lift and not row["significant"]
    return bool(row["rel_lift"] >= minimum_lift and row["p_value_adjusted"] < alpha and not underpowered)


@pytest.mark.parametrize(("n", "effects"), [(40_000, FRIENDLY_WINS), (800, NO_EFFECT)], ids=["winner", "no-effect"])
def test_rollout_names_a_winner_only_where_supported(n, effects):
    config = campaign()
    _, results = simulated(n, effects)
    scopes = [OVERALL, *catalog().ids]
    table = rollout_recommendations(results, scopes=scopes, primary_metric=config.metrics.primary,
                                    minimum_lift=config.minimum_lift, alpha=config.alpha)
    assert list(table["scope"]) == scopes
    for rec in table.itertuples(index=False):
        rows = results[(results["scope"] == rec.scope) & (results["metric"] == config.metrics.primary)
                       & (results["arm"] != "control")]
        best = rows.sort_values("rel_lift", ascending=False).iloc[0]
        assert rec.best_arm == best["arm"]
        assert rec.rel_lift == pytest.approx(best["rel_lift"])
        ok = supported(best, config.minimum_lift, config.alpha)
        assert rec.has_reliable_winner == ok, rec
        if ok:
            assert rec.recommended_arm == best["arm"] and rec.reason == "supported by the data"
        else:
            assert rec.recommended_arm == "control" and rec.reason.startswith("no reliable winner: ")
    if effects is NO_EFFECT:
        assert not table["has_reliable_winner"].any()
    else:
        assert table.set_index("scope").loc[OVERALL, "recommended_arm"] == "friendly"
        assert table["has_reliable_winner"].sum() >= 3


def test_rollout_for_a_scope_without_data():
    table = rollout_recommendations(result_rows({"arm": "friendly", "rel_lift": 0.5, "p_value_adjusted": 1e-6, "mde": 0.05}),
                                    scopes=[OVERALL, "nobody"], primary_metric="open_rate", minimum_lift=0.1, alpha=0.05)
    by_scope = table.set_index("scope")
    assert by_scope.loc[OVERALL, "recommended_arm"] == "friendly"
    assert by_scope.loc["nobody", "recommended_arm"] == "control"
    assert not by_scope.loc["nobody", "has_reliable_winner"]
    assert by_scope.loc["nobody", "best_arm"] is None
    assert np.isnan(by_scope.loc["nobody", "rel_lift"])
    assert "no sent customers" in by_scope.loc["nobody", "reason"]


def test_gate_and_rollout_agree_on_the_overall_scope():
    config = campaign()
    for n, effects in [(40_000, FRIENDLY_WINS), (800, NO_EFFECT)]:
        assignments, results = simulated(n, effects)
        gate = campaign_lift_gate(results, assignments, config)
        overall = rollout_recommendations(results, scopes=[OVERALL], primary_metric=config.metrics.primary,
                                          minimum_lift=config.minimum_lift, alpha=config.alpha).iloc[0]
        assert overall["has_reliable_winner"] == gate.passed
        assert dataclasses.asdict(gate)["best_arm"] == overall["best_arm"]


def test_the_safety_gate_lists_every_blocked_variant_with_its_reasons():
    verdicts = pd.DataFrame({
        "variant_id": ["control", "control", "s1:urgent", "s2:friendly"],
        "segment": ["s1", "s2", "s1", "s2"],
        "decision": ["approved", "blocked", "blocked", "approved"],
        "reasons": ["", "rule false_urgency", "Violence severity 6 >= 4; rule missing_cta", ""],
    })
    gate = evaluate_safety_gate(verdicts, 0.9)
    assert not gate.passed and gate.blocked_variants == ("control", "s1:urgent")
    # The control is blocked because one segment's screen blocked it: that segment's reasons show.
    assert gate.blocked_lines(verdicts) == ["control (s2): rule false_urgency",
                                            "s1:urgent (s1): Violence severity 6 >= 4; rule missing_cta"]


def test_an_unmeasurable_arm_does_not_hide_a_measured_winner():
    rows = result_rows({"arm": "urgent", "rel_lift": 3.0, "p_value_adjusted": np.nan, "mde": np.nan,
                        "unmeasurable_reason": "too few customers in this arm: 4"},
                       {"arm": "friendly", "rel_lift": 0.2, "p_value_adjusted": 0.001, "mde": 0.05, "unmeasurable_reason": ""})
    gate = lift_gate(rows)
    assert gate.best_arm == "friendly" and gate.passed
