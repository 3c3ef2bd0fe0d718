"""Assignment stage: the wave's arm weights per segment, each customer's arm and variant, held out
where the variant was blocked; the SRM check."""

import dagster as dg
import pandas as pd

from personalization_assets.campaign.paths import WAREHOUSE_SCHEMA, table_exists
from personalization_assets.defs.partitions import ALL_SEGMENTS, columns, per_wave
from personalization_assets.defs.resources import (
    AuditResource,
    CampaignResource,
    WarehouseResource,
)
from personalization_assets.defs.types import SCHEMAS, AssignmentsFrame
from personalization_assets.experiment.allocation import (
    ALLOCATION_COLUMNS,
    allocation_table,
    allocation_weights,
    wave_draws,
    weighted_arms,
)
from personalization_assets.experiment.assignment import build_assignments
from personalization_assets.experiment.engagement import SOURCE_IMPORTED
from personalization_assets.experiment.results import sample_ratio_mismatch
from personalization_assets.experiment.rollout import in_test
from personalization_assets.safety.approval import (
    effective_decisions,
    pending,
    reviews_from,
)
from personalization_assets.safety.gate import evaluate_safety_gate


def sendable_decisions(config, audit: AuditResource, message_variants: pd.DataFrame, safety_verdicts: pd.DataFrame,
                       asset: str) -> pd.DataFrame:
    """What may be sent, per variant, checked by the asset that decides sends (`asset`) itself:
    the safety gate holds even when the safety check ran in another run (or not at all), and only
    what a reviewer (approval.mode: reviewer) or the screen (screen) approved is sendable, even when
    the approval check ran in another run. A failed gate or a pending review fails the asset."""
    gate = evaluate_safety_gate(safety_verdicts, config.safety.pass_rate_threshold)
    if not gate.passed:
        raise dg.Failure(f"{asset} not made: {gate.summary()}; blocked: {', '.join(gate.blocked_variants)}")
    decisions = effective_decisions(safety_verdicts, message_variants, reviews_from(audit.log().verified_records()), config.approval.mode)
    waiting = pending(decisions)
    if len(waiting):
        raise dg.Failure(f"{asset} not made: {waiting['variant_id'].nunique()} variants await a reviewer's approval "
                         f"({', '.join(sorted(set(waiting['variant_id'])))}); see `cpo review`, then `cpo approve ... --by NAME`")
    return decisions


def _warehouse_rows(warehouse: WarehouseResource, table: str, where: str, wave: str, *, this_wave_only: bool) -> pd.DataFrame | None:
    """Rows of a warehouse table (`where` on its `wave`; `this_wave_only` when it reads no other
    wave's rows), or None while the table does not exist."""
    with warehouse.reader([table], wave=wave if this_wave_only else None) as connection:
        if not table_exists(connection, table):
            return None
        return connection.execute(f"SELECT * FROM {WAREHOUSE_SCHEMA}.{table} WHERE {where}", [wave]).df()


@dg.asset(**per_wave(SCHEMAS["arm_allocation"]))
def arm_allocation(context: dg.AssetExecutionContext, campaign: CampaignResource, warehouse: WarehouseResource) -> pd.DataFrame:
    """Each segment's arm weights for the wave: the configured ones, or with `allocation: thompson`
    the posterior's (Thompson sampling) given the earlier waves' experiment_results."""
    config, wave, segments = campaign.config, context.partition_key, campaign.catalog.ids
    earlier = pd.DataFrame(columns=["wave", "scope", "metric", "arm", "n", "rate", "outcome_sd"])
    kept = assigned_allocation(warehouse, wave, {(segment, arm) for segment in segments for arm in config.assignment_weights})
    if config.allocation == "fixed" and kept is not None and not (kept["allocation"] == "thompson").any():
        kept = None  # fixed weights come from the campaign file, as they always did
    if config.allocation == "thompson":
        if kept is None:
            # Read from the warehouse, not as an asset input: the wave's assignments decide its
            # results, so an input on the results would be a cycle in the asset graph.
            rows = _warehouse_rows(warehouse, "experiment_results", "wave < ?", wave, this_wave_only=False)
            if rows is not None:
                usable = rows["engagement_source"] == SOURCE_IMPORTED
                earlier = rows[usable | config.thompson.from_simulated_engagement]
    frame = kept if kept is not None else allocation_table(config, segments, earlier, wave)
    adapted = frame.drop_duplicates("segment")["adapted"].astype(bool)
    context.add_output_metadata({
        "dagster/row_count": len(frame), "allocation": str(frame["allocation"].iloc[0]) if len(frame) else config.allocation,
        "adapted_segments": int(adapted.sum()), "kept_from_the_assigned_wave": kept is not None,
        "earlier_waves_read": int(earlier["wave"].nunique()),
        "weights": dg.MetadataValue.md(frame.pivot(index="segment", columns="arm", values="weight").round(3).to_markdown()),
    })
    return frame


def assigned_allocation(warehouse: WarehouseResource, wave: str, cells: set[tuple[str, str]]) -> pd.DataFrame | None:
    """The weights a wave was already assigned with, to keep: its stored arm_allocation rows when
    its assignments exist and the rows cover the same (segment, arm) cells. Re-running an assigned
    wave (`cpo run`, a backfill; the engagement sensor re-runs only what follows the engagement)
    must move nobody to another arm, whatever later imports changed or the campaign's
    `allocation` now says: a wave first assigned with fixed weights under `allocation: thompson`
    keeps them, one assigned with adapted weights keeps those after a switch to `fixed`. A wave
    whose assignment never happened (it failed, or only the weights were previewed) is computed
    again from the results there are now."""
    stored = _warehouse_rows(warehouse, "arm_allocation", "wave = ?", wave, this_wave_only=True)
    if stored is None or not warehouse.has_rows("assignments", wave) or set(zip(stored["segment"], stored["arm"], strict=True)) != cells:
        return None
    return stored[list(ALLOCATION_COLUMNS)].reset_index(drop=True)


@dg.asset(
    **per_wave(SCHEMAS["assignments"]),
    ins={"message_variants": ALL_SEGMENTS, "safety_verdicts": ALL_SEGMENTS, "customer_segments": columns("customer_id", "segment", "contact_hold")},
    check_specs=[dg.AssetCheckSpec("sample_ratio_mismatch", asset="assignments", description="Chi-square of arm counts vs weights; flagged at p < 0.001")],
    dagster_type=AssignmentsFrame,
)
def assignments(
    context: dg.AssetExecutionContext,
    campaign: CampaignResource,
    audit: AuditResource,
    customer_segments: pd.DataFrame,
    message_variants: pd.DataFrame,
    safety_verdicts: pd.DataFrame,
    arm_allocation: pd.DataFrame,
):
    """Each customer's arm (deterministic hash into the wave's weights), variant, and whether it is sent."""
    config = campaign.config
    decisions = sendable_decisions(config, audit, message_variants, safety_verdicts, "assignments")
    # With rollout.test_share, the randomized test is that share of each segment; the rest waits for the rollout.
    testing = in_test(customer_segments["customer_id"], config.experiment_id, config.rollout)
    audience = customer_segments.loc[testing] if not testing.all() else customer_segments
    frame = build_assignments(
        audience, message_variants, decisions,  # a verdict of another text than the stored variant's: blocked
        experiment_id=config.experiment_id, weights=config.assignment_weights, wave=context.partition_key,
        # The wave's own rule: a wave first assigned with fixed weights keeps the campaign's hash.
        arms=adaptive_arms(audience, arm_allocation, config, context.partition_key)
        if (arm_allocation["allocation"] == "thompson").any() else None,
    )
    sealed = audit.log().append_send_decisions(context.run_id, context.partition_key, frame)
    srm = sample_ratio_mismatch(frame, config, arm_allocation)
    held = int((~frame["sent"]).sum())
    yield dg.Output(frame, metadata={"dagster/row_count": len(frame), "sent": len(frame) - held, "held_out": held, "audit_record": sealed["seq"],
                                     "waiting_for_rollout": int((~testing).sum()),
                                     **{f"arm_{k}": v for k, v in srm.observed.items()}})
    yield dg.AssetCheckResult(
        check_name="sample_ratio_mismatch",
        passed=not srm.flagged,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"chi2": srm.chi2, "p_value": srm.p_value, **{f"observed_{k}": v for k, v in srm.observed.items()},
                  **{f"expected_{k}": round(v, 1) for k, v in srm.expected.items()}},
    )


def adaptive_arms(audience: pd.DataFrame, allocation: pd.DataFrame, config, wave: str) -> pd.Categorical:
    """Each customer's arm under the wave's per-segment weights: a draw salted by the wave
    (`allocation.wave_draws`) placed among the segment's cumulative weights."""
    arms = list(config.assignment_weights)
    segments = list(pd.unique(allocation["segment"]))
    codes = pd.Categorical(audience["segment"], categories=segments).codes
    if (codes < 0).any():
        raise dg.Failure(f"arm_allocation of wave {wave} has no weights for segments "
                         f"{sorted(set(audience['segment'].astype(str)) - set(segments))}: materialize arm_allocation for this wave again")
    positions = weighted_arms(wave_draws(audience["customer_id"], config.experiment_id, wave), codes,
                              allocation_weights(allocation, segments, arms))
    return pd.Categorical.from_codes(positions, categories=arms)
