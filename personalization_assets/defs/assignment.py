"""Assignment stage: each customer's arm and variant, held out where the variant was blocked; the SRM check."""

import dagster as dg
import pandas as pd

from personalization_assets.defs.partitions import ALL_SEGMENTS, columns, per_wave
from personalization_assets.defs.resources import AuditResource, CampaignResource
from personalization_assets.defs.types import SCHEMAS, AssignmentsFrame
from personalization_assets.experiment.assignment import build_assignments
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
):
    """Each customer's arm (deterministic hash), variant, and whether it is sent."""
    config = campaign.config
    decisions = sendable_decisions(config, audit, message_variants, safety_verdicts, "assignments")
    # With rollout.test_share, the randomized test is that share of each segment; the rest waits for the rollout.
    testing = in_test(customer_segments["customer_id"], config.experiment_id, config.rollout)
    frame = build_assignments(
        customer_segments.loc[testing] if not testing.all() else customer_segments, message_variants, decisions,  # a verdict of another text than the stored variant's: blocked
        experiment_id=config.experiment_id, weights=config.assignment_weights, wave=context.partition_key,
    )
    sealed = audit.log().append_send_decisions(context.run_id, context.partition_key, frame)
    srm = sample_ratio_mismatch(frame, config)
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
