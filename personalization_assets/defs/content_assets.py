"""Per-segment content assets: index, retrieval, generation, screening, and the safety gate check.

Each is partitioned by segment with a single-run backfill policy: a whole campaign materializes
all segments in one step, and a backfill of one segment replaces only that segment's rows.
"""

from collections.abc import Mapping

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from personalization_assets.audit.trail import variant_records, verdict_records
from personalization_assets.content.corpus import load_corpus
from personalization_assets.content.retrieval import (
    retrieve_for_segments,
    segment_query,
)
from personalization_assets.defs.resources import (
    AuditResource,
    CampaignResource,
    GeneratorResource,
    SafetyResource,
    SearchResource,
)
from personalization_assets.messages.variants import (
    citation_coverage,
    generate_with_repair,
    plan_requests,
    variants_table,
)
from personalization_assets.safety.gate import evaluate_safety_gate
from personalization_assets.safety.policy import SafetyPolicy
from personalization_assets.safety.screening import screen_variants

CONTENT_GROUP = "content"
SCHEMA = "personalization"
ALL_SEGMENTS = dg.AssetIn(partition_mapping=dg.AllPartitionMapping())


def _segment_metadata(frame: pd.DataFrame, **extra: object) -> dict[str, object]:
    return {"dagster/row_count": len(frame), "segments": ", ".join(sorted(frame["segment"].unique())), **extra}


def _service_metadata(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, object]:
    """What a remote backend did for this asset (requests sent, retries by reason, cache hits), as
    `service_*` metadata; nothing for an embedded backend. The counters are per run, so the
    difference across the asset's own calls is exact."""
    if not after:
        return {}
    delta = {name: after[name] - before.get(name, 0) for name in sorted(after)}
    delta.setdefault("retries", 0)
    return {f"service_{name}": (round(value, 3) if isinstance(value, float) else int(value))
            for name, value in delta.items() if value or name in ("requests", "retries")}


def build_content_assets(segment_partitions: dg.StaticPartitionsDefinition) -> list:
    per_segment = dict(
        partitions_def=segment_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        metadata={"partition_expr": "segment"},
        group_name=CONTENT_GROUP,
    )

    @dg.asset(group_name=CONTENT_GROUP)
    def content_index(context: dg.AssetExecutionContext, campaign: CampaignResource, search: SearchResource) -> pd.DataFrame:
        """The approved content corpus (data/content/*.json), validated and indexed for search."""
        corpus = load_corpus(campaign.config.paths.content)
        service_before = dict(search.service_stats())
        index_info = search.index_corpus(corpus)
        context.add_output_metadata(
            {"dagster/row_count": len(corpus), "backend": search.backend, "audiences": ", ".join(sorted(corpus["audience"].unique())),
             **{f"index_{k}": v for k, v in index_info.items()}, **_service_metadata(service_before, search.service_stats())}
        )
        return corpus

    @dg.asset(**per_segment)
    def retrieved_content(
        context: dg.AssetExecutionContext, campaign: CampaignResource, search: SearchResource, content_index: pd.DataFrame
    ) -> pd.DataFrame:
        """Approved documents per segment (BM25 with the segment's audience filter) and for the control."""
        config, catalog = campaign.config, campaign.catalog
        segments = [
            (s.segment_id, segment_query(s.name, s.description, config.goal), s.audiences)
            for s in map(catalog.get, context.partition_keys)
        ]
        service_before = dict(search.service_stats())
        frame = retrieve_for_segments(
            lambda query, audiences: search.search(content_index, query, audiences, config.retrieval.top_k),
            content_index,
            segments,
            control_query=config.goal,
        ).assign(backend=search.backend)
        empty = sorted(set(context.partition_keys) - set(frame.loc[frame["purpose"] == "segment", "segment"]))
        if empty:
            raise dg.Failure(f"no approved documents match the audiences of segments {empty}: add content or widen 'audiences'")
        context.add_output_metadata(
            _segment_metadata(frame, backend=search.backend, **_service_metadata(service_before, search.service_stats()))
        )
        return frame

    @dg.asset(**per_segment)
    def message_variants(
        context: dg.AssetExecutionContext,
        campaign: CampaignResource,
        generator: GeneratorResource,
        audit: AuditResource,
        retrieved_content: pd.DataFrame,
        content_index: pd.DataFrame,
    ) -> pd.DataFrame:
        """One variant per tone per segment, plus the generic control message."""
        requests = plan_requests(
            campaign.config, campaign.catalog, campaign.prompts, context.partition_keys, retrieved_content, content_index
        )
        service_before = dict(generator.service_stats())
        outcome = generate_with_repair(generator.generate, requests, repairable=generator.repairable)
        frame = variants_table(requests, outcome)
        audit.log().append(variant_records(frame, context.run_id))
        context.add_output_metadata(
            _segment_metadata(
                frame,
                backends=", ".join(sorted(frame["backend"].unique())),
                input_tokens=int(frame["input_tokens"].sum()),
                output_tokens=int(frame["output_tokens"].sum()),
                cost_usd=float(frame["cost_usd"].sum()),
                refusals=int((frame["refusal"] != "").sum()),
                repair_attempts=int(frame["repair_attempts"].sum()),
                documents=dg.MetadataValue.md(citation_coverage(retrieved_content, frame).to_markdown(index=False)),
                failing_validation=int((frame["validation_failures"] != "").sum()),
                **_service_metadata(service_before, generator.service_stats()),
            )
        )
        return frame

    @dg.asset(**per_segment)
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
        policy = SafetyPolicy(
            block_severity=settings.block_severity, blocklists=dict(settings.blocklists), policy_version=settings.policy_version
        )
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
        audit.log().append(verdict_records(frame, context.run_id))
        blocked = frame[frame["decision"] != "approved"]
        context.add_output_metadata(
            _segment_metadata(
                frame,
                approved=int((frame["decision"] == "approved").sum()),
                blocked=len(blocked),
                blocked_variants=dg.MetadataValue.md(
                    "\n".join(f"- `{r.variant_id}` ({r.segment}): {r.reasons}" for r in blocked.itertuples()) or "none"
                ),
                policy_version=settings.policy_version,
                **_service_metadata(service_before, safety.service_stats()),
            )
        )
        return frame

    @dg.asset_check(asset=safety_verdicts, blocking=True, description="Share of variants approved >= the campaign's threshold")
    def safety_pass_rate(campaign: CampaignResource, warehouse: DuckDBResource) -> dg.AssetCheckResult:
        # The whole campaign's verdicts, every segment: a one-segment backfill is judged in context.
        with warehouse.get_connection() as connection:
            verdicts = connection.execute(f"SELECT variant_id, segment, decision FROM {SCHEMA}.safety_verdicts").df()
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
            },
        )

    return [content_index, retrieved_content, message_variants, safety_verdicts, safety_pass_rate]
