"""Unsubscribes that flow back: a CSV from the one-click endpoint, a mailbox or an ESP, read and
checked before anything joins the suppression list (`cpo unsubscribes import FILE`).

Columns: `customer_id` and/or `email` (each row needs one), and optionally `token` (the signed
token of the customer's unsubscribe link: with `CPO_UNSUBSCRIBE_SECRET` set, a row whose token is
not the customer's is refused, so a forged request cannot unsubscribe someone else), `reason`
(default `unsubscribed`) and `date`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from personalization_assets.audience.eligibility import read_entry_file
from personalization_assets.campaign.config import EMAIL_ADDRESS_PATTERN
from personalization_assets.campaign.errors import (
    DataContractError,
    offending_rows,
)
from personalization_assets.delivery.mime import SigningKey, unsubscribe_tokens

COLUMNS = ("customer_id", "email", "token", "reason", "date")
_REASON = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


def _refuse(frame: pd.DataFrame, mask: pd.Series, path: Path, column: str, rule: str) -> None:
    if mask.any():
        raise DataContractError(path, column, rule, offending_rows(frame, mask, [c for c in COLUMNS if c in frame.columns]), int(mask.sum()))


def read_unsubscribes(path: Path, *, secret: str | None) -> pd.DataFrame:
    """The file's entries (customer_id, email, reason), checked; any bad row refuses the whole file (exit 64)."""
    frame = read_entry_file(path, COLUMNS, required=(), what="the unsubscribes file", row_name="unsubscribe").apply(
        lambda c: c.replace("", pd.NA))
    _refuse(frame, frame["customer_id"].isna() & frame["email"].isna(), path, "customer_id", "each row needs a customer_id or an email")
    _refuse(frame, frame["email"].notna() & ~frame["email"].fillna("").str.match(EMAIL_ADDRESS_PATTERN), path, "email",
            "must be one email address")
    frame["reason"] = frame["reason"].fillna("unsubscribed")
    _refuse(frame, ~frame["reason"].str.match(_REASON.pattern), path, "reason", "must be a lower-case word such as unsubscribed")
    if frame["token"].notna().any():
        if secret is None:
            raise DataContractError(path, "token", "tokens can be checked only with CPO_UNSUBSCRIBE_SECRET set (the key that signed them)")
        signed = frame["token"].notna()
        _refuse(frame, signed & frame["customer_id"].isna(), path, "customer_id", "a token is the customer's: a row with a token needs its customer_id")
        expected = unsubscribe_tokens(frame["customer_id"].fillna(""), SigningKey.from_secret(secret))
        _refuse(frame, signed & (frame["token"].str.lower() != expected), path, "token",
                "must be the customer's signed unsubscribe token (a forged or mistyped request)")
    return frame[["customer_id", "email", "reason"]].astype(object).where(frame[["customer_id", "email", "reason"]].notna(), "")
