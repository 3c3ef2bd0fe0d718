"""Report stage: the wave's HTML and PDF report, its headline in the asset's metadata."""

import dagster as dg
import pandas as pd

from personalization_assets.campaign.paths import reports_dir
from personalization_assets.defs.partitions import ALL_SEGMENTS, per_wave
from personalization_assets.defs.resources import AuditResource, CampaignResource
from personalization_assets.report import ReportInputs, write_report
from personalization_assets.safety.approval import effective_decisions, reviews_from


@dg.asset(**per_wave(), ins={"safety_verdicts": ALL_SEGMENTS, "message_variants": ALL_SEGMENTS})
def experiment_report(
    context: dg.AssetExecutionContext,
    campaign: CampaignResource,
    audit: AuditResource,
    experiment_results: pd.DataFrame,
    assignments: pd.DataFrame,
    safety_verdicts: pd.DataFrame,
    message_variants: pd.DataFrame,
    customer_segments: pd.DataFrame,
    engagement: pd.DataFrame,
    segment_exploration: pd.DataFrame,
    content_index: pd.DataFrame,
    screened_corpus: pd.DataFrame,
    arm_allocation: pd.DataFrame,
) -> dg.MaterializeResult:
    """The wave's report, HTML and PDF under $CPO_HOME/reports/<wave>/; its headline in the metadata."""
    files = write_report(
        reports_dir() / context.partition_key,
        ReportInputs(
            config=campaign.config,
            catalog=campaign.catalog,
            wave=context.partition_key,
            results=experiment_results,
            assignments=assignments,
            verdicts=safety_verdicts,
            variants=message_variants,
            customer_segments=customer_segments,
            engagement=engagement,
            exploration=segment_exploration,
            corpus=content_index,
            screened_corpus=screened_corpus,
            allocation=arm_allocation,
            approvals=effective_decisions(safety_verdicts, message_variants, reviews_from(audit.log().verified_records()),
                                          campaign.config.approval.mode),
        ),
    )
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(files.html)),
        "pdf": dg.MetadataValue.path(str(files.pdf)),
        "summary": dg.MetadataValue.md(files.markdown),
        "headline": files.report.headline,
    })
