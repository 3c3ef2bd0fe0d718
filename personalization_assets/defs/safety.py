"""Safety stage: a verdict for every variant, and the blocking pass-rate check over the whole campaign."""

import dagster as dg
import pandas as pd

from personalization_assets.audit.trail import verdict_records
from personalization_assets.campaign.paths import WAREHOUSE_SCHEMA
from personalization_assets.defs.metadata import add_segment_metadata, service_metadata
from personalization_assets.defs.partitions import CONTENT_SAFETY_POOL, per_segment
from personalization_assets.defs.resources import (
    AuditResource,
    CampaignResource,
    SafetyResource,
    WarehouseResource,
)
from personalization_assets.defs.types import SCHEMAS, SafetyVerdictsFrame
from personalization_assets.safety.approval import (
    APPROVED,
    MODE_SCREEN,
    REJECTED,
    effective_decisions,
    pending,
    reviews_from,
)
from personalization_assets.safety.gate import evaluate_safety_gate
from personalization_assets.safety.policy import SafetyPolicy
from personalization_assets.safety.screening import screen_variants


@dg.asset(**per_segment(SCHEMAS["safety_verdicts"]),
          dagster_type=SafetyVerdictsFrame, pool=CONTENT_SAFETY_POOL)
def safety_verdicts(
    context: dg.AssetExecutionContext,
    campaign: CampaignResource,
    safety: SafetyResource,
    audit: AuditResource,
    message_variants: pd.DataFrame,
    retrieved_content: pd.DataFrame,
    content_index: pd.DataFrame,
) -> pd.DataFrame:
    """A verdict for every variant: category severities, blocklists, compliance rules, fail closed."""
    settings = campaign.config.safety
    policy = SafetyPolicy.from_settings(settings)
    service_before = dict(safety.service_stats())
    frame = screen_variants(
        message_variants,
        retrieved_content,
        content_index,
        analyze=lambda texts: safety.analyze(texts, dict(settings.blocklists)),
        policy=policy,
        backend=safety.backend,
        body_length=campaign.config.generation.body_length,
    )
    audit.log().append(verdict_records(frame, context.run_id, approval_mode=campaign.config.approval.mode))
    blocked = frame[frame["decision"] != "approved"]
    add_segment_metadata(
        context,
        frame,
        lambda part: {
            "approved": int((part["decision"] == "approved").sum()),
            "blocked": int((part["decision"] != "approved").sum()),
            "blocked_variants": dg.MetadataValue.md(
                "\n".join(f"- `{r.variant_id}`: {r.reasons}" for r in part[part["decision"] != "approved"].itertuples()) or "none"
            ),
        },
        run_blocked=len(blocked),
        policy_version=settings.policy_version,
        **service_metadata(service_before, safety.service_stats()),
    )
    return frame


@dg.asset_check(asset=safety_verdicts, blocking=True, description="Share of variants approved >= the campaign's threshold")
def safety_pass_rate(campaign: CampaignResource, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    # The whole campaign's verdicts, every segment: a one-segment backfill is judged in context.
    with warehouse.reader(["safety_verdicts"]) as connection:
        verdicts = connection.execute(f"SELECT variant_id, segment, decision, reasons FROM {WAREHOUSE_SCHEMA}.safety_verdicts").df()
    gate = evaluate_safety_gate(verdicts, campaign.config.safety.pass_rate_threshold)
    return dg.AssetCheckResult(
        passed=gate.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=gate.summary(),
        metadata={
            "pass_rate": gate.pass_rate,
            "threshold": gate.threshold,
            "variants": gate.n_variants,
            "blocked": gate.n_blocked,
            "blocked_variants": ", ".join(gate.blocked_variants) or "none",
            # Every blocked variant with its reasons, per segment: the UI and `cpo run` list them.
            "blocked_reasons": dg.MetadataValue.md("\n".join(f"- {line}" for line in gate.blocked_lines(verdicts)) or "none"),
        },
    )


@dg.asset_check(asset=safety_verdicts, blocking=True,
                description="Every variant the screen approved has a reviewer's approval of its exact text (approval.mode: reviewer)")
def reviewer_approval(campaign: CampaignResource, warehouse: WarehouseResource, audit: AuditResource) -> dg.AssetCheckResult:
    mode = campaign.config.approval.mode
    with warehouse.reader(["safety_verdicts", "message_variants"]) as connection:
        verdicts = connection.execute(f"SELECT segment, variant_id, arm, decision, content_hash FROM {WAREHOUSE_SCHEMA}.safety_verdicts").df()
        variants = connection.execute(f"SELECT segment, variant_id, subject, body, cta, citations FROM {WAREHOUSE_SCHEMA}.message_variants").df()
    decisions = effective_decisions(verdicts, variants, reviews_from(audit.log().verified_records()), mode)
    waiting = pending(decisions).drop_duplicates("variant_id")
    approved = decisions[decisions["decision"] == APPROVED]
    if mode == MODE_SCREEN:
        description = "approval.mode screen: variants the automated screen approved are approved; no person reviewed them"
    elif len(waiting):
        description = (f"{len(waiting)} variants await a reviewer's approval; nobody is assigned until each is approved or "
                       "rejected (`cpo review`, then `cpo approve VARIANT ... --by NAME`)")
    else:
        description = f"every approved text was approved by a reviewer ({', '.join(sorted(set(approved['approved_by'])))})"
    return dg.AssetCheckResult(
        passed=waiting.empty,
        severity=dg.AssetCheckSeverity.ERROR,
        description=description,
        metadata={
            "mode": mode,
            "pending": len(waiting),
            "pending_variants": dg.MetadataValue.md(
                "\n".join(f"- `{r.variant_id}` (sha256 {r.content_hash[:12]}…)" for r in waiting.itertuples()) or "none"),
            "rejected": int((decisions["decision"] == REJECTED).sum()),
        },
    )
