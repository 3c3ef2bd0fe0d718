"""Audience stage: the customer file under its contract, and each wave's customers with their segment."""

import datetime as dt

import dagster as dg
import numpy as np
import pandas as pd

from personalization_assets.audience.customers import (
    NUMERIC_RULES,
    OPTIONAL_TEXT_COLUMNS,
    load_customers,
    past_spend,
)
from personalization_assets.audience.eligibility import (
    CONTACTABLE,
    HOLD_FREQUENCY_CAP,
    Suppression,
    wave_contact_holds,
    with_contact_holds,
)
from personalization_assets.audience.segmentation import (
    assign_segments,
    check_rules_against_customers,
    segment_sizes,
)
from personalization_assets.defs.partitions import (
    SEGMENTATION_COLUMNS,
    WAVE_GROUP,
    columns,
    per_wave,
)
from personalization_assets.defs.resources import (
    CampaignResource,
    DeliveryLedgerResource,
)
from personalization_assets.defs.types import SCHEMAS, CustomersFrame, table_schema

# customer_segments keeps what later assets read, not a copy of the customer file: the segment and
# the contract's tier and numbers (analysis covariates, explainability). Free text (names, emails,
# locations, extra columns) stays in `customers`, read from there by the one asset that needs it.
SEGMENT_COLUMNS = ("wave", "customer_id", "segment", "contact_hold", "tier", *(rule.column for rule in NUMERIC_RULES), "past_spend")


@dg.asset(group_name=WAVE_GROUP, dagster_type=CustomersFrame, metadata={"dagster/column_schema": SCHEMAS["customers"]})
def customers(context: dg.AssetExecutionContext, campaign: CampaignResource) -> pd.DataFrame:
    """The customer file, validated against its contract, with each customer's contact hold
    (suppressed, no consent, no or invalid address, an unsafe merge value); a bad file stops the wave here."""
    config = campaign.config
    path = config.paths.customers
    frame = load_customers(path)
    # A rule on a column the file lacks fails here, before anything is stored.
    check_rules_against_customers(campaign.catalog, frame)
    for column in OPTIONAL_TEXT_COLUMNS:  # optional merge fields: empty when the file has none
        if column not in frame.columns:
            frame[column] = ""
    frame = with_contact_holds(frame, config.audience, config.paths.suppression, source=path)
    held = frame.loc[frame["contact_hold"] != CONTACTABLE, "contact_hold"].value_counts()
    context.add_output_metadata({"dagster/row_count": len(frame), "source": str(path), "contact_holds": int(held.sum()),
                                 **{f"held_{reason}": int(n) for reason, n in held.items()}})
    return frame


@dg.asset(**per_wave(table_schema(SEGMENT_COLUMNS)), ins={"customers": columns(*SEGMENTATION_COLUMNS, "email", "contact_hold")})
def customer_segments(context: dg.AssetExecutionContext, campaign: CampaignResource, delivery_ledger: DeliveryLedgerResource,
                      customers: pd.DataFrame) -> pd.DataFrame:
    """This wave's snapshot of customers, each with its segment (first matching rule wins): the
    columns later assets read (SEGMENT_COLUMNS), not every column of the file. Its contact holds add
    this wave's: the suppression entries that flowed back (bounces, unsubscribes) and the frequency
    cap, both as of the moment the wave was first decided (its plan time in the delivery ledger)."""
    config = campaign.config
    with delivery_ledger.open() as ledger:
        planned = ledger.plan_time(config.campaign_id, context.partition_key)
        shared = Suppression.from_entries(ledger.suppressions(as_of=planned))
        cap = config.delivery.frequency_cap
        recent = (ledger.deliveries_by_address(planned - dt.timedelta(days=cap.days), planned, other_than=(config.campaign_id, context.partition_key))
                  if cap is not None else pd.Series(dtype="int64"))
    customers = customers.assign(contact_hold=wave_contact_holds(
        customers["contact_hold"].to_numpy(dtype=object), customers["customer_id"], customers["email"], shared, recent,
        cap.max_emails if cap is not None else None))
    segments = assign_segments(customers, campaign.catalog)
    labels = np.asarray(segments.cat.categories, dtype=object)[segments.cat.codes.to_numpy()]
    data = {"wave": context.partition_key, "customer_id": customers["customer_id"].to_numpy(), "segment": labels}
    for column in SEGMENT_COLUMNS[3:-1]:  # the contact hold, the tier and the numbers
        data[column] = customers[column].to_numpy()
    data["past_spend"] = past_spend(customers)
    frame = pd.DataFrame(data, columns=list(SEGMENT_COLUMNS))
    sizes = segment_sizes(segments, campaign.catalog)
    held = frame["contact_hold"].fillna(CONTACTABLE).astype(str).str.split(":").str[0].value_counts()
    context.add_output_metadata({"dagster/row_count": len(frame), "planned_at": planned.isoformat(),
                                 "held_frequency_cap": int(held.get(HOLD_FREQUENCY_CAP, 0)),
                                 **{f"segment_{k}": v for k, v in sizes.items()}})
    return frame
