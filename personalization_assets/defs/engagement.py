"""Engagement stage: the wave's ESP export when it is there, else engagement SIMULATED from ground truth."""

import dagster as dg
import pandas as pd

from personalization_assets.campaign.config import REVENUE_METRIC
from personalization_assets.defs.partitions import columns, per_wave
from personalization_assets.defs.resources import (
    CampaignResource,
    DeliveryLedgerResource,
)
from personalization_assets.experiment.engagement import (
    import_engagement,
    simulate_engagement,
)
from personalization_assets.experiment.joins import PROFILE_COLUMNS, measured_customers


@dg.asset(
    **per_wave(),
    # Engagement follows the send: the emails are rendered before any engagement is taken.
    deps=[dg.AssetKey("personalized_messages")],
    ins={
        "assignments": columns("customer_id", "segment", "arm", "sent", "hold_reason"),
        "customer_segments": columns("customer_id", *PROFILE_COLUMNS),
    },
)
def engagement(
    context: dg.AssetExecutionContext, campaign: CampaignResource, delivery_ledger: DeliveryLedgerResource, assignments: pd.DataFrame,
    customer_segments: pd.DataFrame
) -> pd.DataFrame:
    """Opens, clicks, conversions: the wave's ESP export if present, else SIMULATED from ground truth.
    An export's unsubscribes and complaints join the suppression list: the next wave sends them nothing."""
    config = campaign.config
    return take_engagement(context, config, assignments, customer_segments, config.paths.engagement_file(context.partition_key),
                           ledger=delivery_ledger)


def take_engagement(context: dg.AssetExecutionContext, config, assignments: pd.DataFrame, customer_segments: pd.DataFrame,
                    path, salt: str = "", ledger: DeliveryLedgerResource | None = None) -> pd.DataFrame:
    """The engagement of the customers `assignments` sent: the ESP export at `path` if present,
    else SIMULATED (draws salted by `salt`, so two sends of one wave draw apart)."""
    wave = context.partition_key
    sent = measured_customers(assignments, customer_segments, columns=PROFILE_COLUMNS)
    if path.is_file():
        every_sent = config.engagement.lists == "every_sent_customer"
        frame, missing = import_engagement(path, sent, wave, config.engagement.min_coverage if every_sent else 0.0,
                                           config.engagement.conversions, require_revenue=REVENUE_METRIC in config.metrics.all)
        metadata = {"source": f"imported from {path}", "sent_customers_missing_from_file": missing}
        if ledger is not None:
            metadata["suppression_entries_added"] = add_opt_outs(ledger, frame, f"engagement export {path.name}")
    else:
        frame = simulate_engagement(sent, config.simulation, wave, salt=salt)
        metadata = {"source": f"SIMULATED (no {path.name} in {path.parent})"}
    context.add_output_metadata({"dagster/row_count": len(frame), **metadata,
                                 **{k: int(frame[k].sum()) for k in ("opened", "clicked", "converted")},
                                 **({"revenue": round(float(frame["revenue"].sum()), 2)} if frame["revenue"].notna().any() else {})})
    return frame


def add_opt_outs(ledger: DeliveryLedgerResource, frame: pd.DataFrame, source: str) -> int:
    """Add the customers an ESP export marks unsubscribed or complained to the shared suppression list; returns how many were new."""
    entries = [frame.loc[frame[column].fillna(0).astype(float) > 0, ["customer_id"]].assign(reason=reason)
               for column, reason in (("unsubscribed", "unsubscribed"), ("complained", "complained")) if column in frame.columns]
    if not entries:
        return 0
    with ledger.open() as opened:
        return opened.add_suppressions(pd.concat(entries), source)
