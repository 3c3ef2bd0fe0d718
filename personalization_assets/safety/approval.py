"""Human approval of every distinct message before it can be sent (`approval.mode: reviewer`).

A campaign has few distinct messages (segments x tones + the control), so a person reading each
one is cheap and is the strongest control there is. An approval binds the exact content: the
SHA-256 of the subject, body, call to action and citations (`content_hash`). Approvals are records
in the audit trail (`kind: approval`), with the reviewer's name, so they are tamper-evident and
outlive the warehouse; a variant whose text changes in any way has a new hash and needs a new
approval. A reviewer may also reject a text: its customers are held out (`variant_rejected`).

In `approval.mode: screen` (the sample's default, so `cpo run` runs end to end offline) what the
automated screen approves is approved, and the report and the audit trail say so.

Only a variant the screen approved can be approved by a person: the screen fails closed, and a
reviewer cannot overrule a blocked verdict.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

MODE_SCREEN, MODE_REVIEWER = "screen", "reviewer"
APPROVED, REJECTED, PENDING, BLOCKED = "approved", "rejected", "pending", "blocked"
CONTENT_FIELDS = ("subject", "body", "cta", "citations")


def content_hash(subject: str, body: str, cta: str, citations: str) -> str:
    """The SHA-256 that an approval binds: the exact subject, body, call to action and citations."""
    canonical = json.dumps({"subject": subject, "body": body, "cta": cta, "citations": citations},
                           sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def content_hashes(variants: pd.DataFrame) -> pd.Series:
    """`content_hash` of every variant row (a few dozen rows: a plain loop)."""
    texts = variants[list(CONTENT_FIELDS)].fillna("").astype(str)
    return pd.Series([content_hash(*row) for row in texts.itertuples(index=False)], index=variants.index, dtype=object)


@dataclass(frozen=True)
class Review:
    """A person's decision on one exact text."""

    variant_id: str
    content_hash: str
    decision: str  # approved or rejected
    by: str
    reason: str = ""
    seq: int = 0  # its position in the audit trail


def reviews_from(records: Iterable[Mapping[str, object]]) -> dict[tuple[str, str], Review]:
    """The latest review of each (variant id, content hash) in audit records, oldest first in."""
    latest: dict[tuple[str, str], Review] = {}
    for record in records:
        if record.get("kind") == "approval":
            review = Review(str(record["variant_id"]), str(record["content_hash"]), str(record["decision"]), str(record["by"]),
                            str(record.get("reason") or ""), int(record.get("seq", 0)))
            latest[(review.variant_id, review.content_hash)] = review
    return latest


def effective_decisions(verdicts: pd.DataFrame, variants: pd.DataFrame, reviews: Mapping[tuple[str, str], Review],
                        mode: str) -> pd.DataFrame:
    """Per (segment, variant): the screen's decision, the text's hash, and what may be sent.

    Columns: segment, variant_id, arm, screen_decision, content_hash, decision (approved,
    blocked, rejected or pending) and approved_by (the reviewer, "automated screen", or "").
    A verdict covers the text it judged (`verdicts.content_hash`): a variant whose text changed
    after it was screened (or a verdict that records no text) counts as blocked, fail closed.
    """
    texts = variants[["segment", "variant_id", *CONTENT_FIELDS]].copy()
    texts["content_hash"] = content_hashes(texts)
    judged = verdicts["content_hash"] if "content_hash" in verdicts.columns else pd.Series(None, index=verdicts.index, dtype=object)
    frame = verdicts[["segment", "variant_id", "arm", "decision"]].assign(judged_hash=judged.to_numpy()).rename(
        columns={"decision": "screen_decision"}).merge(
        texts[["segment", "variant_id", "content_hash"]], on=["segment", "variant_id"], how="left", validate="one_to_one")
    stale = frame["judged_hash"].isna() | (frame["judged_hash"] != frame["content_hash"])
    frame["screen_decision"] = frame["screen_decision"].where(~stale, "blocked")
    frame = frame.drop(columns="judged_hash")
    decisions, approved_by = [], []
    for row in frame.itertuples(index=False):
        review = reviews.get((row.variant_id, row.content_hash))
        if row.screen_decision != APPROVED or pd.isna(row.content_hash):
            decisions.append(BLOCKED)
            approved_by.append("")
        elif review is not None and review.decision == REJECTED:  # a person's rejection holds in every mode
            decisions.append(REJECTED)
            approved_by.append("")
        elif mode == MODE_SCREEN:
            decisions.append(APPROVED)
            approved_by.append("automated screen")
        elif review is None:
            decisions.append(PENDING)
            approved_by.append("")
        else:
            decisions.append(review.decision)
            approved_by.append(review.by if review.decision == APPROVED else "")
    return frame.assign(decision=decisions, approved_by=approved_by)


def pending(decisions: pd.DataFrame) -> pd.DataFrame:
    return decisions[decisions["decision"] == PENDING]


def approval_records(decisions: pd.DataFrame, variants: pd.DataFrame, *, by: str, decision: str, reason: str = "") -> list[dict]:
    """Audit records approving (or rejecting) each distinct text of these decision rows; the text
    itself is kept, so a later review can show what changed."""
    texts = variants.assign(content_hash=content_hashes(variants)).drop_duplicates("content_hash").set_index("content_hash")
    records = []
    for row in decisions.drop_duplicates(["variant_id", "content_hash"]).itertuples(index=False):
        text = texts.loc[row.content_hash]
        records.append({
            "kind": "approval", "variant_id": row.variant_id, "content_hash": row.content_hash, "decision": decision, "by": by,
            "reason": reason, **{field: str(text[field]) for field in CONTENT_FIELDS},
        })
    return records


def last_approved_text(records: Sequence[Mapping[str, object]], variant_id: str) -> Mapping[str, object] | None:
    """The text of the latest approved version of a variant, from the audit records."""
    approved = [r for r in records if r.get("kind") == "approval" and r.get("variant_id") == variant_id and r.get("decision") == APPROVED]
    return approved[-1] if approved else None


def text_diff(before: Mapping[str, object] | None, after: Mapping[str, object]) -> str:
    """A unified diff of subject, body, CTA and citations against the last approved version."""
    if before is None:
        return "(no earlier approved version)"

    def lines(text: Mapping[str, object]) -> list[str]:
        return [f"{field}: {line}" for field in CONTENT_FIELDS for line in str(text.get(field, "")).splitlines() or [""]]

    diff = list(difflib.unified_diff(lines(before), lines(after), "last approved", "pending", lineterm=""))
    return "\n".join(diff) if diff else "(identical to the last approved version)"
