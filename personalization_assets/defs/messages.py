"""Message stage: one variant per tone per segment, plus the generic control, generated and repaired."""

import dagster as dg
import pandas as pd

from personalization_assets.audit.trail import variant_records
from personalization_assets.campaign.paths import WAREHOUSE_SCHEMA
from personalization_assets.content.corpus import load_corpus
from personalization_assets.defs.metadata import add_segment_metadata, service_metadata
from personalization_assets.defs.partitions import GENERATION_POOL, per_segment
from personalization_assets.defs.resources import (
    AuditResource,
    CampaignResource,
    GeneratorResource,
    WarehouseResource,
)
from personalization_assets.defs.types import SCHEMAS, MessageVariantsFrame
from personalization_assets.messages.staleness import stale_variants, staleness_summary
from personalization_assets.messages.variants import (
    citation_coverage,
    generate_with_repair,
    plan_requests,
    variants_table,
)


@dg.asset(**per_segment(SCHEMAS["message_variants"]),
          dagster_type=MessageVariantsFrame, pool=GENERATION_POOL)
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
    add_segment_metadata(
        context,
        frame,
        lambda part: {
            # What generating this segment paid: the shared control counts in the first segment that asked for it.
            "input_tokens": int(part["input_tokens"].sum()),
            "output_tokens": int(part["output_tokens"].sum()),
            "cost_usd": float(part["cost_usd"].sum()),
            "refusals": int((part["refusal"] != "").sum()),
            "repair_attempts": int(part["repair_attempts"].sum()),
            "failing_validation": int((part["validation_failures"] != "").sum()),
            "documents": dg.MetadataValue.md(citation_coverage(retrieved_content[retrieved_content["segment"].isin(part["segment"])],
                                                               part).to_markdown(index=False)),
        },
        backends=", ".join(sorted(frame["backend"].unique())),
        run_input_tokens=int(frame["input_tokens"].sum()),
        run_cost_usd=float(frame["cost_usd"].sum()),
        **service_metadata(service_before, generator.service_stats()),
    )
    return frame


@dg.asset_check(asset=message_variants, description="Every segment's messages were written from the current prompts and documents")
def content_current(campaign: CampaignResource, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    # Every segment, not only the partitions just built: after a one-segment backfill the others
    # are listed with the command that rebuilds them.
    with warehouse.reader(["message_variants", "retrieved_content"]) as connection:
        variants = connection.execute(f"SELECT segment, variant_id, prompt_sha256 FROM {WAREHOUSE_SCHEMA}.message_variants").df()
        retrieved = connection.execute(f"SELECT * FROM {WAREHOUSE_SCHEMA}.retrieved_content").df()
    stale = stale_variants(campaign.config, campaign.catalog, campaign.prompts, variants, retrieved,
                           load_corpus(campaign.config.paths.content))
    return dg.AssetCheckResult(
        passed=not stale,
        severity=dg.AssetCheckSeverity.WARN,
        description=staleness_summary(stale),
        metadata={"stale_segments": ", ".join(stale) or "none",
                  "stale_variants": dg.MetadataValue.md("\n".join(f"- {s}: {', '.join(v)}" for s, v in stale.items()) or "none")},
    )
