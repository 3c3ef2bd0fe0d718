"""Delivery stage (`cpo send --wave W`, or the UI): each sent customer's real MIME message, then its
delivery through the mail transport or an ESP bundle, recorded in the delivery ledger.

Not part of the wave job: a wave is decided, rendered and analysed by `cpo run`; it goes out only
when someone sends it. Both assets come after the approval and safety gates (assignments sends only
approved variants to contactable customers) and delivery checks both again when it runs.
"""

import datetime as dt
from contextlib import nullcontext
from typing import Literal

import dagster as dg
import numpy as np
import pandas as pd

from personalization_assets.audience.customers import OPTIONAL_TEXT_COLUMNS
from personalization_assets.audience.eligibility import Suppression, load_suppression
from personalization_assets.campaign.errors import ConfigError
from personalization_assets.campaign.paths import exports_dir
from personalization_assets.defs.assignment import sendable_decisions
from personalization_assets.defs.partitions import (
    ALL_SEGMENTS,
    DELIVERY_GROUP,
    columns,
    per_wave,
)
from personalization_assets.defs.resources import (
    AuditResource,
    CampaignResource,
    DeliveryLedgerResource,
    MailTransportResource,
    UnsubscribeKeyResource,
)
from personalization_assets.delivery import ledger as statuses
from personalization_assets.delivery.compliance import screen_campaign
from personalization_assets.delivery.esp_bundle import write_bundle
from personalization_assets.delivery.mime import (
    MESSAGE_FILE_COLUMNS,
    MESSAGES_FILE,
    TEST_KEY_NAME,
    build_messages,
    literal,
)
from personalization_assets.delivery.send import deliver
from personalization_assets.delivery.transport import SessionRefused

ESP_FOLDER = "esp"


def messages_path(wave: str):
    return exports_dir() / wave / MESSAGES_FILE


@dg.asset(
    **per_wave(group=DELIVERY_GROUP),
    ins={
        "message_variants": ALL_SEGMENTS,
        "assignments": columns("wave", "customer_id", "segment", "arm", "variant_id", "sent"),
        "customers": columns("customer_id", *OPTIONAL_TEXT_COLUMNS),
    },
)
def email_messages(context: dg.AssetExecutionContext, campaign: CampaignResource, unsubscribe_key: UnsubscribeKeyResource,
                   delivery_ledger: DeliveryLedgerResource, assignments: pd.DataFrame, customers: pd.DataFrame,
                   message_variants: pd.DataFrame) -> pd.DataFrame:
    """Every sent customer's email as a MIME message (text and HTML parts, From, Reply-To, a
    Message-ID per campaign, wave and customer, List-Unsubscribe with one-click), in
    $CPO_HOME/exports/<wave>/email_messages.parquet; the table lists them without their bytes.
    A campaign that fails the compliance screen (no sender, a template without the sender's name,
    postal address or unsubscribe link) stops here. Once a send has handed any of them over, the
    wave keeps the file: a resumed send sends the same bytes."""
    import duckdb

    config = campaign.config
    layout = screen_campaign(config)
    key = unsubscribe_key.key()
    path = messages_path(context.partition_key)
    with delivery_ledger.open() as ledger:
        handed_over = ledger.rows(config.campaign_id, context.partition_key, statuses.HANDED_OVER_STATUSES)
    kept = path.is_file() and len(handed_over) > 0
    if not kept:
        build_messages(assignments, customers, message_variants, config=config, wave=context.partition_key, layout=layout, key=key, path=path)
    with duckdb.connect() as connection:
        frame = connection.execute(f"SELECT {', '.join(MESSAGE_FILE_COLUMNS[:-1])} FROM read_parquet({literal(path.as_posix())})").df()
    context.add_output_metadata({"dagster/row_count": len(frame), "messages": dg.MetadataValue.path(str(path)),
                                 "messages_bytes": path.stat().st_size,
                                 "kept_from_earlier_send": kept, "unsubscribe_tokens_signed_with": str(frame["signed_with"].iloc[0]) if len(frame) else key.name})
    return frame


class DeliveryConfig(dg.Config):
    """How to hand the wave over: `transport` (the mail server of CPO_SMTP_HOST, else the outbox
    folder) or `esp_bundle` (files for an ESP to import)."""

    method: Literal["transport", "esp_bundle"] = "transport"


@dg.asset(
    **per_wave(group=DELIVERY_GROUP),
    ins={
        "email_messages": dg.AssetIn(),
        "safety_verdicts": ALL_SEGMENTS,
        "assignments": columns("wave", "customer_id", "segment", "arm", "variant_id", "sent"),
        "customers": columns("customer_id", *OPTIONAL_TEXT_COLUMNS),
        "message_variants": ALL_SEGMENTS,
    },
)
def deliveries(context: dg.AssetExecutionContext, config: DeliveryConfig, campaign: CampaignResource, audit: AuditResource,
               delivery_ledger: DeliveryLedgerResource,
               transport: MailTransportResource, unsubscribe_key: UnsubscribeKeyResource, email_messages: pd.DataFrame,
               safety_verdicts: pd.DataFrame, assignments: pd.DataFrame, customers: pd.DataFrame, message_variants: pd.DataFrame) -> pd.DataFrame:
    """The wave's delivery ledger: each message's status (sent, deferred, bounced, suppressed,
    withheld, exported), attempts and the server's reply. Idempotent and resumable: a message the
    ledger records as sent is never sent again; one a killed or interrupted send left open is sent
    by the next. A customer suppressed since the wave was decided, no longer sent that variant at
    that address by the wave's assignments, over the frequency cap now, or whose variant is no
    longer approved, is sent nothing."""
    settings = campaign.config
    wave = context.partition_key
    if (config.method == "esp_bundle" or transport.delivers_to_people) and (
            (email_messages["signed_with"] == TEST_KEY_NAME).any() or unsubscribe_key.key().name == TEST_KEY_NAME):
        where = "an ESP bundle" if config.method == "esp_bundle" else transport.description
        raise ConfigError("environment", "CPO_UNSUBSCRIBE_SECRET is not set, or the wave's messages were built without it (their unsubscribe "
                          f"links are signed with the published test key); set it before sending through {where}")
    # What may be sent now, by the rule assignments used (the safety gate, reviews, rejections since).
    decisions = sendable_decisions(settings, audit, message_variants, safety_verdicts, "deliveries")
    rehearsal = transport.rehearses(config.method)
    with delivery_ledger.open() as ledger, ledger.sending(), (delivery_ledger.open_rehearsal() if rehearsal else nullcontext(ledger)) as records:
        # The outbox is a rehearsal: its records are its own, so they count for no frequency cap
        # and never stop a real send of the same wave; suppression and caps come from the shared ledger.
        records.enqueue(settings.campaign_id, wave, email_messages)
        if config.method == "esp_bundle":
            _record_published_bundles(records, settings.campaign_id, wave)
        # Open messages no longer in the wave's message file (it was rebuilt since) are not sent.
        listed = records.rows(settings.campaign_id, wave, statuses.OPEN_STATUSES)
        records.mark_many(settings.campaign_id, wave, listed.loc[~listed["customer_id"].isin(email_messages["customer_id"].astype(str)),
                                                                  "customer_id"], statuses.WITHHELD, "no longer in the wave's message file")
        open_rows = email_messages.merge(listed[["customer_id", "attempts"]], on="customer_id")
        # Fail closed at the last moment: what may not go out now does not, whatever was decided before.
        refusals = _refusals(open_rows, settings, ledger, decisions, assignments, customers, wave)
        for reason, (status, mask) in refusals.items():
            records.mark_many(settings.campaign_id, wave, open_rows.loc[mask, "customer_id"], status, reason)
        refused = np.logical_or.reduce([mask for _, mask in refusals.values()])
        exhausted = ~refused & (open_rows["attempts"] >= settings.delivery.max_attempts).to_numpy()
        records.mark_many(settings.campaign_id, wave, open_rows.loc[exhausted, "customer_id"], statuses.FAILED,
                          f"gave up after {settings.delivery.max_attempts} attempts (delivery.max_attempts)")
        ready = open_rows[~refused & ~exhausted]
        if config.method == "esp_bundle" and ready.empty:
            outcome = "no message is left to export: every message of the wave was sent, exported or refused before"
        elif config.method == "esp_bundle":
            # One folder per run: a later bundle (the messages an earlier send left) never replaces an earlier one.
            folder = exports_dir() / wave / ESP_FOLDER / context.run_id
            bundled = write_bundle(assignments, customers, message_variants, config=settings, wave=wave, layout=screen_campaign(settings),
                                   key=unsubscribe_key.key(), folder=folder, only=ready["customer_id"])
            # A kill between the bundle's publication and this leaves its rows open: the next send
            # records them from the published bundle (`_record_published_bundles`) instead of bundling them again.
            records.mark_many(settings.campaign_id, wave, bundled, statuses.EXPORTED, f"in the ESP bundle {folder}")
            outcome = f"{len(bundled)} messages in the ESP bundle {folder}"
        else:
            try:
                report = deliver(messages_path(wave), records, campaign_id=settings.campaign_id, wave=wave,
                                 envelope_from=settings.sender.from_address, settings=settings.delivery,
                                 connect=lambda: transport.connect(wave, settings.delivery), pending=ready,
                                 rate_limited=transport.delivers_to_people)
            except SessionRefused as exc:
                raise ConfigError("environment", f"{exc}; check CPO_SMTP_* and the sender; nothing more was sent, and the messages not "
                                  "accepted are sent by the next `cpo send`") from None
            outcome = f"through {transport.description}{' (a rehearsal: no cap counts it)' if rehearsal else ''}: {report.line()}"
        rows = records.rows(settings.campaign_id, wave)
    counts = rows["status"].value_counts()
    context.log.info(outcome)
    context.add_output_metadata({"dagster/row_count": len(rows), "outcome": outcome, "gave_up": int(exhausted.sum()),
                                 **{f"status_{status}": int(n) for status, n in counts.items()}})
    return rows.assign(wave=wave)



def _record_published_bundles(records: statuses.Ledger, campaign_id: str, wave: str) -> None:
    """Mark exported every open message that a published bundle of the wave lists: a bundle is
    handed over once it is in place, whether or not its send lived to record it."""
    from personalization_assets.delivery.esp_bundle import (
        RECIPIENTS_FILE,
        published_recipients,
    )

    for folder in sorted((exports_dir() / wave / ESP_FOLDER).glob("*/")):
        if (folder / RECIPIENTS_FILE).is_file():
            records.mark_many(campaign_id, wave, published_recipients(folder), statuses.EXPORTED, f"in the ESP bundle {folder}")


def _refusals(open_rows: pd.DataFrame, settings, ledger, decisions: pd.DataFrame, assignments: pd.DataFrame, customers: pd.DataFrame,
              wave: str) -> dict[str, tuple[str, np.ndarray]]:
    """Which open messages must not go out now, by reason: (status, mask), the first reason that applies."""
    suppression = load_suppression(settings.paths.suppression).combined(Suppression.from_entries(ledger.suppressions()))
    address = open_rows["email"].astype(str).str.lower()
    suppressed = (open_rows["customer_id"].astype(str).isin(suppression.by_customer_id.index) | address.isin(suppression.by_email.index)).to_numpy()
    # A kept message file must still be what the wave's assignments send, to the address on file.
    current = assignments.loc[assignments["sent"].astype(bool), ["customer_id", "segment", "variant_id"]].merge(
        customers[["customer_id", "email"]], on="customer_id")
    still_sent = open_rows[["customer_id", "segment", "variant_id", "email"]].merge(current, how="left", indicator=True)["_merge"].eq("both").to_numpy()
    approved = decisions.loc[decisions["decision"] == "approved", ["segment", "variant_id"]].drop_duplicates()
    is_approved = open_rows.merge(approved, on=["segment", "variant_id"], how="left", indicator=True)["_merge"].eq("both").to_numpy()
    over_cap = np.zeros(len(open_rows), dtype=bool)
    if settings.delivery.frequency_cap is not None:  # other campaigns may have sent since this wave was decided
        now = statuses.now_utc()
        recent = ledger.deliveries_by_address(now - dt.timedelta(days=settings.delivery.frequency_cap.days), now,
                                              other_than=(settings.campaign_id, wave))
        over_cap = (address.map(recent).fillna(0) >= settings.delivery.frequency_cap.max_emails).to_numpy()
    refusals, taken = {}, np.zeros(len(open_rows), dtype=bool)
    for reason, status, mask in (("on the suppression list when the send ran", statuses.SUPPRESSED, suppressed),
                                 ("its variant is not approved now", statuses.WITHHELD, ~is_approved),
                                 ("the wave's assignments no longer send it this message at this address", statuses.WITHHELD, ~still_sent),
                                 ("over delivery.frequency_cap when the send ran", statuses.WITHHELD, over_cap)):
        refusals[reason] = (status, mask & ~taken)
        taken |= mask
    return refusals
