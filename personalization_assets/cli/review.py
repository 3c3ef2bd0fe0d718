"""`cpo review` and `cpo approve`: a person reads each pending variant and approves (or rejects) its exact text."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from personalization_assets.audit.trail import AuditLog
from personalization_assets.campaign.config import CampaignConfig
from personalization_assets.campaign.errors import ConfigError
from personalization_assets.campaign.paths import WAREHOUSE_SCHEMA
from personalization_assets.safety.approval import (
    APPROVED,
    MODE_REVIEWER,
    PENDING,
    REJECTED,
    approval_records,
    effective_decisions,
    last_approved_text,
    reviews_from,
    text_diff,
)
from personalization_assets.warehouse import Warehouse, as_warehouse

REVIEW_COLUMNS = "segment, variant_id, arm, subject, body, cta, citations"


def _tables(warehouse: Warehouse | Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    warehouse = as_warehouse(warehouse)
    with warehouse.reader(["message_variants", "safety_verdicts", "content_index"]) as connection:
        tables = {row[0] for row in connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [WAREHOUSE_SCHEMA]).fetchall()}
        missing = sorted({"message_variants", "safety_verdicts", "content_index"} - tables)
        if missing:
            raise ConfigError(warehouse.describe(), f"no {', '.join(missing)} yet: run `cpo run` first, so there are variants to review")
        variants = connection.execute(f"SELECT {REVIEW_COLUMNS} FROM {WAREHOUSE_SCHEMA}.message_variants").df()
        verdicts = connection.execute(f"SELECT segment, variant_id, arm, decision, reasons, content_hash FROM {WAREHOUSE_SCHEMA}.safety_verdicts").df()
        corpus = connection.execute(f"SELECT document_id, title FROM {WAREHOUSE_SCHEMA}.content_index").df()
    return variants, verdicts, corpus


def _decisions(config: CampaignConfig, warehouse: Warehouse | Path, log: AuditLog) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, list[dict]]:
    variants, verdicts, corpus = _tables(warehouse)
    records = log.verified_records()
    decisions = effective_decisions(verdicts, variants, reviews_from(records), MODE_REVIEWER)
    decisions = decisions.merge(verdicts[["segment", "variant_id", "reasons"]], on=["segment", "variant_id"])
    return decisions, variants, corpus, records


def review_text(config: CampaignConfig, warehouse: Warehouse | Path, log: AuditLog, *, show_all: bool = False) -> str:
    """Every variant waiting for a person (or, with `show_all`, every variant): its text, the
    screen's verdict and reasons, the documents it cites, and a diff against its last approved text."""
    decisions, variants, corpus, records = _decisions(config, warehouse, log)
    titles = dict(zip(corpus["document_id"], corpus["title"]))
    shown = decisions if show_all else decisions[decisions["decision"] == PENDING]
    if shown.empty:
        counts = decisions.drop_duplicates("variant_id")["decision"].value_counts()
        return (f"nothing to review: {counts.get(APPROVED, 0)} variants approved, {counts.get(REJECTED, 0)} rejected, "
                f"{counts.get('blocked', 0)} blocked by the screen (approval.mode {config.approval.mode})")
    texts = variants.set_index(["segment", "variant_id"])
    blocks = []
    for (variant_id, digest), rows in shown.groupby(["variant_id", "content_hash"], sort=True):
        first = rows.iloc[0]
        text = texts.loc[(first["segment"], variant_id)]
        cited = [c for c in str(text["citations"]).split(",") if c]
        blocks.append("\n".join([
            f"== {variant_id} ({first['decision']}; segments {', '.join(sorted(rows['segment']))}); sha256 {digest}",
            f"screen: {first['screen_decision']}" + (f" ({first['reasons']})" if first["reasons"] else ""),
            f"subject: {text['subject']}", "body:", *(f"  {line}" for line in str(text["body"]).splitlines()),
            f"call to action: {text['cta']}",
            "cites: " + ("; ".join(f"{c} {titles.get(c, '(not in the index)')}" for c in cited) or "nothing"),
            "changes since the last approved version:",
            text_diff(last_approved_text(records, variant_id), {f: text[f] for f in ("subject", "body", "cta", "citations")}),
        ]))
    pending_count = int(shown["decision"].eq(PENDING).sum())
    footer = (f"{shown['variant_id'].nunique()} variants shown" + (f", {pending_count} pending" if pending_count else "")
              + ". Approve with `cpo approve VARIANT_ID ... --by NAME` (or --all-pending); reject with --reject --reason TEXT.")
    return "\n\n".join([*blocks, footer])


def approve(config: CampaignConfig, warehouse: Warehouse | Path, log: AuditLog, variant_ids: Sequence[str], *, by: str,
            all_pending: bool = False, reject: bool = False, reason: str = "") -> str:
    """Record a person's approval (or rejection) of the current exact text of each named variant."""
    if not by.strip():
        raise ConfigError("--by", "must name the reviewer")
    if reject and not reason.strip():
        raise ConfigError("--reason", "a rejection needs a reason")
    decisions, variants, _, _ = _decisions(config, warehouse, log)
    known = set(decisions["variant_id"])
    unknown = sorted(set(variant_ids) - known)
    if unknown:
        raise ConfigError("cpo approve", f"unknown variants {unknown}; known: {sorted(known)}")
    chosen = decisions[decisions["variant_id"].isin(variant_ids) | (all_pending & decisions["decision"].eq(PENDING))]
    if chosen.empty:
        raise ConfigError("cpo approve", "name the variants to approve, or pass --all-pending")
    screened_out = sorted(set(chosen.loc[chosen["screen_decision"] != APPROVED, "variant_id"]))
    if screened_out:
        raise ConfigError("cpo approve", f"variants {screened_out} were blocked by the screen; a reviewer cannot overrule it "
                                         "(fix the prompt or content, then run again)")
    written = log.append(approval_records(chosen, variants, by=by.strip(), decision=REJECTED if reject else APPROVED,
                                          reason=reason.strip()))
    verb = "rejected" if reject else "approved"
    return "\n".join(f"{verb} {r['variant_id']} (sha256 {r['content_hash'][:12]}…) by {r['by']}: audit record {r['seq']}"
                     for r in written)
