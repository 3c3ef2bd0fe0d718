"""Guardrail metrics (unsubscribes, spam complaints): imported or simulated, tested for
non-inferiority, and a tone that fails one neither wins nor is sent by any policy."""

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.proportion import confint_proportions_2indep

from personalization_assets.campaign.config import (
    CampaignConfig,
    SimulationEffects,
    SimulationSettings,
)
from personalization_assets.campaign.errors import DataContractError
from personalization_assets.experiment.engagement import (
    guardrail_probabilities,
    import_engagement,
    simulate_engagement,
)
from personalization_assets.experiment.gates import (
    guardrail_blocked_arms,
    guardrail_failures,
    guardrail_verdict,
)
from personalization_assets.experiment.results import (
    campaign_lift_gate,
    compute_results,
)
from personalization_assets.stats.proportions import difference_interval
from personalization_assets_tests.experiment.test_gates import (
    FRIENDLY_WINS,
    WAVE,
    _simulated,
)
from personalization_assets_tests.pure_fixtures import (
    campaign,
    catalog,
    customer_segments,
)


@pytest.mark.parametrize("x_c, n_c, x_t, n_t", [(10, 5000, 17, 5000), (0, 100, 3, 120), (5, 40, 0, 35), (200, 1000, 260, 900)])
def test_the_difference_interval_is_newcombes(x_c, n_c, x_t, n_t):
    for alpha in (0.05, 0.1):
        expected = confint_proportions_2indep(x_t, n_t, x_c, n_c, method="newcomb", compare="diff", alpha=alpha)
        np.testing.assert_allclose(difference_interval(x_c, n_c, x_t, n_t, alpha), expected, atol=1e-12)


def _results_with_guardrail_effect(effect: dict[str, float], n: int = 40_000, seed: int = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One simulated wave where the tones' unsubscribe (and complaint) rates are multiplied by `effect`."""
    from personalization_assets.experiment.assignment import build_assignments
    from personalization_assets.experiment.joins import (
        analysis_frame,
        measured_customers,
    )
    from personalization_assets_tests.pure_fixtures import (
        variants_frame,
        verdicts_frame,
    )

    config = campaign()
    customers = customer_segments(n, seed)
    variants = variants_frame(catalog().ids)
    assignments = build_assignments(customers.assign(contact_hold=""), variants, verdicts_frame(variants), experiment_id=config.experiment_id,
                                    weights=config.arm_weights, wave=WAVE)
    settings = SimulationSettings(seed=seed, effects=SimulationEffects(default=FRIENDLY_WINS), unsubscribe_rate=0.004,
                                  guardrail_effects=effect)
    engagement = simulate_engagement(measured_customers(assignments, customers), settings, WAVE)
    results = compute_results(analysis_frame(assignments, engagement, customers), config, wave=WAVE, segments=catalog().ids,
                              source="simulated")
    return assignments, results


def test_a_tone_that_raises_unsubscribes_neither_wins_nor_may_be_sent():
    # friendly lifts opens by half, and doubles unsubscribes: it fails its guardrail, and the
    # next tone cannot carry the gate either (no effect on opens).
    assignments, results = _results_with_guardrail_effect({"friendly": 2.0})
    failures = guardrail_failures(results, "friendly")
    assert failures and "unsubscribe_rate significantly raised" in failures[0] and "not shown within +0.30 pts" in failures[0]
    assert guardrail_blocked_arms(results) == ["friendly"]
    gate = campaign_lift_gate(results, assignments, campaign())
    assert not gate.passed and gate.best_arm != "friendly"
    # The same tone with harmless unsubscribes wins.
    assignments, results = _results_with_guardrail_effect({})
    assert guardrail_blocked_arms(results) == []
    gate = campaign_lift_gate(results, assignments, campaign())
    assert gate.passed and gate.best_arm == "friendly", gate.failures


def test_guardrails_are_their_own_holm_family():
    _, with_guardrails = _simulated(40_000, tuple(sorted(FRIENDLY_WINS.items())), 3)
    config = campaign()
    raw = config.model_dump()
    raw["guardrails"] = {"unsubscribe_rate": None, "complaint_rate": None}
    without = CampaignConfig.model_validate(raw)
    assert without.guardrails.margins == {}
    rows = with_guardrails[with_guardrails["metric"].isin(config.metrics.all)].reset_index(drop=True)
    assert rows["guardrail_margin"].isna().all()
    assert set(with_guardrails["metric"]) == {*config.metrics.all, "unsubscribe_rate", "complaint_rate"}
    guardrail = with_guardrails[with_guardrails["metric"] == "unsubscribe_rate"]
    assert guardrail.loc[guardrail["arm"] != "control", "guardrail_margin"].eq(0.003).all()


def test_an_export_without_guardrail_columns_measures_none(tmp_path):
    sent = pd.DataFrame({"customer_id": ["A", "B", "C"]})
    path = tmp_path / "e.csv"
    path.write_text("customer_id,opened,clicked,converted\nA,1,0,0\nB,0,0,0\nC,1,1,0\n")
    frame, _ = import_engagement(path, sent, WAVE)
    assert frame["unsubscribed"].isna().all() and frame["complained"].isna().all()
    path.write_text("customer_id,opened,clicked,converted,unsubscribed\nA,1,0,0,1\nB,0,0,0,0\n")
    frame, missing = import_engagement(path, sent, WAVE)
    assert frame["unsubscribed"].tolist() == [1.0, 0.0, 0.0] and frame["complained"].isna().all() and missing == 1
    path.write_text("customer_id,opened,clicked,converted,unsubscribed\nA,1,0,0,yes\nB,0,0,0,0\nC,0,0,0,0\n")
    with pytest.raises(DataContractError, match="unsubscribed.*must be 0 or 1"):
        import_engagement(path, sent, WAVE)


def test_the_simulator_draws_guardrails_at_their_rates():
    settings = SimulationSettings(unsubscribe_rate=0.01, complaint_rate=0.002, guardrail_effects={"urgent": 3.0})
    unsubscribe, complain = guardrail_probabilities(pd.DataFrame(index=range(2)), settings, ["control", "urgent"])
    np.testing.assert_allclose(unsubscribe, [0.01, 0.03])
    np.testing.assert_allclose(complain, [0.002, 0.006])
    customers = customer_segments(40_000, 1).assign(arm=np.where(np.arange(40_000) % 2, "urgent", "control"))
    frame = simulate_engagement(customers, settings, WAVE)
    urgent = customers["arm"].to_numpy() == "urgent"
    assert frame.loc[~urgent, "unsubscribed"].mean() == pytest.approx(0.01, abs=0.003)
    assert frame.loc[urgent, "unsubscribed"].mean() == pytest.approx(0.03, abs=0.005)


@pytest.mark.parametrize("lower, upper, verdict", [(-0.001, 0.002, "holds"), (0.0005, 0.002, "holds"), (-0.001, 0.004, "unproven"),
                                                   (0.001, 0.004, "fails")])
def test_the_guardrail_verdict(lower, upper, verdict):
    assert guardrail_verdict(lower, upper, 0.003) == verdict
