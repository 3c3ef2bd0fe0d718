"""Rendering stage: the send list, and each sent customer's email rendered locally for export."""

import os

import dagster as dg
import pandas as pd

from personalization_assets.audience.customers import OPTIONAL_TEXT_COLUMNS
from personalization_assets.audit.trail import STAGE_TEST
from personalization_assets.campaign.paths import exports_dir
from personalization_assets.defs.partitions import ALL_SEGMENTS, columns, per_wave
from personalization_assets.defs.resources import AuditResource
from personalization_assets.messages.rendering import EXPORT_FILE, export_messages


@dg.asset(
    **per_wave(),
    ins={
        "message_variants": ALL_SEGMENTS,
        "assignments": columns("wave", "customer_id", "segment", "arm", "variant_id", "sent"),
        "customers": columns("customer_id", *OPTIONAL_TEXT_COLUMNS),
    },
)
def personalized_messages(
    context: dg.AssetExecutionContext, audit: AuditResource, assignments: pd.DataFrame, customers: pd.DataFrame, message_variants: pd.DataFrame
) -> pd.DataFrame:
    """The send list (who gets which approved variant, at which address); the send-ready emails,
    merge fields filled in locally, go to $CPO_HOME/exports/<wave>/personalized_messages.parquet,
    each email's hash sealed in the audit trail."""
    return export_and_seal(context, audit, assignments, customers, message_variants, EXPORT_FILE, STAGE_TEST)


def export_and_seal(context: dg.AssetExecutionContext, audit: AuditResource, assignments: pd.DataFrame, customers: pd.DataFrame,
                    message_variants: pd.DataFrame, file_name: str, stage: str) -> pd.DataFrame:
    """Render the sent customers' emails to `$CPO_HOME/exports/<wave>/<file_name>`, sealed in the
    audit trail as `stage`'s emails; returns the send list."""
    path = exports_dir() / context.partition_key / file_name
    unsealed = path.with_name(f".{file_name}.unsealed")
    frame = export_messages(assignments, customers, message_variants, unsealed)
    # Sealed before the file takes its name: a send-ready export is always a sealed one, and the
    # decisions of a run that stops before this are never "sent".
    sealed = audit.log().append_rendered_emails(context.run_id, context.partition_key, unsealed, stage)
    os.replace(unsealed, path)
    context.add_output_metadata({"dagster/row_count": len(frame), "emails": dg.MetadataValue.path(str(path)),
                                 "emails_bytes": path.stat().st_size, "audit_record": sealed["seq"]})
    return frame
