"""Results stage: lifts and tests per arm, the lift check, and the gated rollout recommendation."""

import dagster as dg
import pandas as pd

from personalization_assets.defs.partitions import columns, per_wave
from personalization_assets.defs.resources import CampaignResource
from personalization_assets.defs.types import SCHEMAS, ExperimentResultsFrame
from personalization_assets.experiment.engagement import (
    ANALYSED_COLUMNS,
    engagement_source,
)
from personalization_assets.experiment.joins import COVARIATES, analysis_frame
from personalization_assets.experiment.results import (
    campaign_lift_gate,
    campaign_rollout,
    compute_results,
    gated_rollout,
    result_scopes,
    weights_vary,
)


@dg.asset(
    **per_wave(SCHEMAS["experiment_results"]),
    ins={
        "assignments": columns("customer_id", "segment", "arm", "sent", "hold_reason"),
        "engagement": columns(*ANALYSED_COLUMNS),
        "customer_segments": columns("customer_id", *COVARIATES),
        "arm_allocation": columns("segment", "arm", "weight"),
    },
    check_specs=[dg.AssetCheckSpec("lift_threshold", asset="experiment_results",
                                   description="Best tone's primary-metric lift >= target, significant after Holm, no SRM")],
    dagster_type=ExperimentResultsFrame,
)
def experiment_results(
    context: dg.AssetExecutionContext,
    campaign: CampaignResource,
    assignments: pd.DataFrame,
    engagement: pd.DataFrame,
    customer_segments: pd.DataFrame,
    arm_allocation: pd.DataFrame,
):
    """Rates, lifts with CIs, p-values (Holm-adjusted), CUPED, chance to beat control: overall and per segment."""
    config = campaign.config
    frame = analysis_frame(assignments, engagement, customer_segments)
    source = engagement_source(engagement)
    segments = result_scopes(campaign.catalog.ids, pd.unique(frame["segment"]))[1:]
    results = compute_results(frame, config, wave=context.partition_key, segments=segments, source=source,
                              stratify=weights_vary(arm_allocation))
    gate = campaign_lift_gate(results, assignments, config, arm_allocation)
    yield dg.Output(results, metadata={"dagster/row_count": len(results), "engagement_source": source})
    yield dg.AssetCheckResult(
        check_name="lift_threshold",
        passed=gate.passed,
        # Not blocking: the report must still say "no reliable winner". The rollout asset
        # applies the same gate to itself.
        severity=dg.AssetCheckSeverity.WARN,
        description=gate.summary(),
        metadata={"best_arm": gate.best_arm or "none", "rel_lift": gate.rel_lift, "p_value_adjusted": gate.p_value_adjusted,
                  "mde": gate.mde, "n_per_arm": gate.n_per_arm, "minimum_lift": gate.minimum_lift,
                  "srm_p_value": gate.srm_p_value, "engagement_rows_p_value": gate.engagement_p_value, "failures": "; ".join(gate.failures) or "none", "engagement_source": source},
    )


@dg.asset(**per_wave(), ins={"assignments": columns("segment", "arm"), "arm_allocation": columns("segment", "arm", "weight")})
def rollout_recommendation(
    context: dg.AssetExecutionContext, campaign: CampaignResource, experiment_results: pd.DataFrame, assignments: pd.DataFrame,
    arm_allocation: pd.DataFrame,
) -> pd.DataFrame:
    """The tone to roll out per segment, only where the data supports it; control otherwise."""
    config = campaign.config
    scopes = result_scopes(campaign.catalog.ids, experiment_results["scope"])
    gate, own = campaign_rollout(experiment_results, assignments, config, scopes, arm_allocation)
    frame = gated_rollout(own, gate)
    frame.insert(0, "wave", context.partition_key)
    context.add_output_metadata({"dagster/row_count": len(frame), "lift_gate": gate.summary(),
                                 "winners": ", ".join(f"{r.scope}={r.recommended_arm}" for r in frame.itertuples() if r.has_reliable_winner) or "none"})
    return frame
