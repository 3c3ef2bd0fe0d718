"""The no-email holdout: an arm that is sent nothing, measured on conversions by any channel, so
the report states the email's own effect and not only tone against the generic message."""

import numpy as np
import pandas as pd
import pytest

from personalization_assets.campaign.config import NO_EMAIL_ARM, CampaignConfig
from personalization_assets.campaign.errors import DataContractError
from personalization_assets.experiment.assignment import (
    HOLD_NO_EMAIL,
    build_assignments,
)
from personalization_assets.experiment.engagement import (
    import_engagement,
    simulate_engagement,
)
from personalization_assets.experiment.joins import analysis_frame, measured_customers
from personalization_assets.experiment.results import (
    VS_NO_EMAIL,
    compute_results,
    sample_ratio_mismatch,
)
from personalization_assets_tests.pure_fixtures import (
    campaign,
    catalog,
    customer_segments,
    variants_frame,
    verdicts_frame,
)

WAVE = "2026-01-05"


def holdout_config(**simulation) -> CampaignConfig:
    raw = campaign().model_dump()
    raw["arms"] = {"control": 0.225, "urgent": 0.225, "informational": 0.225, "friendly": 0.225, NO_EMAIL_ARM: 0.1}
    raw["engagement"]["conversions"] = "any_channel"
    raw["simulation"].update({"organic_conversion_rate": 0.01, **simulation})
    return CampaignConfig.model_validate(raw)


def test_the_holdout_is_an_assigned_arm_and_the_message_arms_share_the_rest():
    config = holdout_config()
    assert config.assignment_weights[NO_EMAIL_ARM] == pytest.approx(0.1) and config.no_email_share == pytest.approx(0.1)
    assert NO_EMAIL_ARM not in config.arm_weights and sum(config.arm_weights.values()) == pytest.approx(1)
    assert config.arm_weights["control"] == pytest.approx(0.25)


def test_a_holdout_needs_conversions_by_any_channel():
    raw = holdout_config().model_dump()
    raw["engagement"]["conversions"] = "email_clicks"
    raw["simulation"]["organic_conversion_rate"] = 0.0
    with pytest.raises(ValueError, match="set engagement.conversions: any_channel"):
        CampaignConfig.model_validate(raw)


def _wave(config: CampaignConfig, n: int = 40_000, seed: int = 2):
    customers = customer_segments(n, seed)
    variants = variants_frame(catalog().ids)
    assignments = build_assignments(customers.assign(contact_hold=np.where(np.arange(n) == 0, "suppressed:unsubscribed", "")), variants,
                                    verdicts_frame(variants), experiment_id=config.experiment_id, weights=config.assignment_weights, wave=WAVE)
    return customers, assignments


def test_holdout_customers_are_sent_nothing_and_measured():
    config = holdout_config()
    customers, assignments = _wave(config)
    holdout = assignments["arm"] == NO_EMAIL_ARM
    assert abs(holdout.mean() - 0.1) < 0.01
    assert not assignments.loc[holdout, "sent"].any()
    assert set(assignments.loc[holdout, "hold_reason"]) <= {HOLD_NO_EMAIL, "suppressed:unsubscribed"}
    assert not sample_ratio_mismatch(assignments, config).flagged
    measured = measured_customers(assignments, customers)
    assert set(measured["customer_id"]) == set(assignments.loc[assignments["sent"] | (assignments["hold_reason"] == HOLD_NO_EMAIL), "customer_id"])
    engagement = simulate_engagement(measured.assign(**customers.set_index("customer_id").loc[measured["customer_id"], ["age", "tier"]]
                                                     .reset_index(drop=True)), config.simulation, WAVE)
    by_arm = engagement.assign(arm=measured["arm"].to_numpy()).groupby("arm")[["opened", "clicked", "converted", "unsubscribed"]].mean()
    assert by_arm.loc[NO_EMAIL_ARM, ["opened", "clicked", "unsubscribed"]].eq(0).all()
    assert by_arm.loc[NO_EMAIL_ARM, "converted"] == pytest.approx(0.01, abs=0.004)  # organic conversions only
    assert by_arm.loc["friendly", "converted"] > by_arm.loc[NO_EMAIL_ARM, "converted"]

    results = compute_results(analysis_frame(assignments, engagement, customers), config, wave=WAVE, segments=catalog().ids, source="simulated")
    effect = results[results["scope"] == VS_NO_EMAIL].set_index("arm")
    assert set(effect.index) == {NO_EMAIL_ARM, *config.arm_names} and set(effect["metric"]) == {"conversion_rate"}
    assert effect.loc["control", "rel_lift"] > 0 and effect.loc["control", "rel_lift_ci_low"] > 0  # the email itself converts
    assert np.isnan(effect.loc[NO_EMAIL_ARM, "rel_lift"])
    # The tones' comparison with control is unchanged by the holdout: no no-email row elsewhere.
    assert NO_EMAIL_ARM not in set(results.loc[results["scope"] != VS_NO_EMAIL, "arm"])


def test_an_export_may_list_the_holdouts_conversions_but_never_an_open(tmp_path):
    sent = pd.DataFrame({"customer_id": ["A", "B", "H"], "arm": ["control", "friendly", NO_EMAIL_ARM]})
    path = tmp_path / "e.csv"
    path.write_text("customer_id,opened,clicked,converted\nA,1,0,1\nB,0,0,0\nH,0,0,1\n")
    frame, _ = import_engagement(path, sent, WAVE, conversions="any_channel")
    assert frame["converted"].tolist() == [1, 0, 1]
    with pytest.raises(DataContractError, match="a conversion requires a click"):
        import_engagement(path, sent, WAVE)
    path.write_text("customer_id,opened,clicked,converted\nA,1,0,1\nB,0,0,0\nH,1,0,0\n")
    with pytest.raises(DataContractError, match="no_email holdout was sent no email to open"):
        import_engagement(path, sent, WAVE, conversions="any_channel")


def test_an_export_without_the_holdouts_rows_is_flagged():
    from personalization_assets.experiment.results import engagement_mismatch

    config = holdout_config()
    customers, assignments = _wave(config)
    measured = measured_customers(assignments, customers)
    engagement = simulate_engagement(measured, config.simulation, WAVE)
    engagement.loc[(measured["arm"] == NO_EMAIL_ARM).to_numpy(), "in_export"] = False  # an ESP export: emailed customers only
    engagement.loc[(measured["arm"] == NO_EMAIL_ARM).to_numpy(), "converted"] = 0
    results = compute_results(analysis_frame(assignments, engagement, customers), config, wave=WAVE, segments=catalog().ids, source="imported")
    lost = engagement_mismatch(results, config)
    assert lost.flagged and lost.observed[NO_EMAIL_ARM] == 0
