"""Who may be emailed: suppression, consent, an address, and merge values that are safe to render.

Decided when the customers load, whole columns at a time, as one `contact_hold` per customer: ""
(CONTACTABLE) when the customer was checked and may be emailed, else the reason; a missing value
means "never checked" and is held out too (`experiment/assignment.py`: fail closed) (CONTACT_HOLD_ORDER gives the precedence when
several apply). A held customer keeps its arm (the assignment hash ignores holds, so the arms stay
balanced) but is sent nothing and is left out of the analysis.

A merge value that could change what the email says or does (a link or a tag in a first name, CR/LF
that would start a header line, bidi characters, template syntax, an overlong value) holds that one
customer out rather than rejecting the file: one bad row among a million should not stop a
campaign, and the value never reaches an email. The reason names the field, so the CLI and the
report count them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from personalization_assets.campaign.config import (
    EMAIL_ADDRESS_PATTERN,
    AudienceSettings,
)
from personalization_assets.campaign.errors import (
    DataContractError,
    offending_rows,
    read_csv_as_text,
)
from personalization_assets.messages.prompts import MERGE_FIELDS
from personalization_assets.safety.text import UNSAFE_TEXT_PATTERNS

CONTACTABLE = ""  # checked, and may be emailed
HOLD_NOT_CHECKED = "contact_not_checked"  # no contact check recorded (e.g. rows stored by an earlier version)
HOLD_SUPPRESSED = "suppressed"  # written as suppressed:<reason>, e.g. suppressed:unsubscribed
HOLD_NO_CONSENT = "no_consent"
HOLD_NO_EMAIL = "no_email"
HOLD_INVALID_EMAIL = "invalid_email"
HOLD_UNSAFE_MERGE_VALUE = "unsafe_merge_value"  # written as unsafe_merge_value:<field>
HOLD_FREQUENCY_CAP = "frequency_cap"
CONTACT_HOLD_ORDER = (HOLD_SUPPRESSED, HOLD_NO_CONSENT, HOLD_NO_EMAIL, HOLD_INVALID_EMAIL, HOLD_UNSAFE_MERGE_VALUE, HOLD_FREQUENCY_CAP)
CONTACT_HOLD_EXPLANATIONS = {
    HOLD_SUPPRESSED: "listed in the suppression file (unsubscribed, bounced, complained, ...); never emailed",
    HOLD_NO_CONSENT: "the consent column does not record consent to email",
    HOLD_NO_EMAIL: "no email address on file",
    HOLD_INVALID_EMAIL: "the email address is not a single valid address",
    HOLD_NOT_CHECKED: "no contact check was recorded for the customer (stored by an earlier version); re-run the wave",
    HOLD_UNSAFE_MERGE_VALUE: "a merge value holds markup, a URL, control or bidi characters, template syntax, "
    "or is longer than the campaign allows; it would change what the email says",
    HOLD_FREQUENCY_CAP: "already sent as many campaign emails in the last days as delivery.frequency_cap allows (every campaign "
    "sharing this CPO_HOME counts)",
}

SUPPRESSION_COLUMNS = ("customer_id", "email", "reason", "date")
_REASON = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
EMAIL_MAX_CHARS = 254  # RFC 5321's limit on a forward path
_URL_LIKE = r"(?i:://|\bwww\.|\b[a-z0-9-]+\.(?:com|net|org|info|biz|io|ru|cn|xyz|top|ly|co|me|link|click)\b)"
# Merge values are one line of plain text: everything UNSAFE_TEXT_PATTERNS names, any line break,
# and anything that reads as a link.
_UNSAFE_MERGE_VALUE = "|".join(
    [*(f"(?:{p})" for p in UNSAFE_TEXT_PATTERNS.values()), r"[\n\r\u2028\u2029\x85]", f"(?:{_URL_LIKE})"]
)
CONSENT_TRUE = ("true", "yes", "y", "1", "opted_in", "opt-in")
CONSENT_FALSE = ("false", "no", "n", "0", "opted_out", "opt-out", "")


@dataclass(frozen=True)
class Suppression:
    """The suppression file's entries: each customer id and (lower-cased) address, with its reason."""

    by_customer_id: pd.Series  # reason, indexed by customer_id
    by_email: pd.Series  # reason, indexed by lower-cased email

    @classmethod
    def empty(cls) -> Suppression:
        return cls(pd.Series(dtype=object), pd.Series(dtype=object))

    def __len__(self) -> int:
        return len(self.by_customer_id) + len(self.by_email)

    @classmethod
    def from_entries(cls, frame: pd.DataFrame) -> Suppression:
        """From entries with customer_id and/or email (missing or blank: not given) and reason; the first entry of each wins."""
        frame = frame.reindex(columns=["customer_id", "email", "reason"]).astype("string").apply(lambda c: c.str.strip().replace("", pd.NA))
        by_id = frame.dropna(subset=["customer_id"]).drop_duplicates("customer_id")
        by_email = frame.dropna(subset=["email"]).assign(email=lambda f: f["email"].str.lower()).drop_duplicates("email")
        return cls(
            pd.Series(by_id["reason"].to_numpy(dtype=object), index=by_id["customer_id"].to_numpy(dtype=object)),
            pd.Series(by_email["reason"].to_numpy(dtype=object), index=by_email["email"].to_numpy(dtype=object)),
        )

    def combined(self, other: Suppression) -> Suppression:
        """Both lists' entries; where both list a customer or an address, this list's reason."""
        def merge(mine: pd.Series, theirs: pd.Series) -> pd.Series:
            joined = pd.concat([mine, theirs])
            return joined[~joined.index.duplicated(keep="first")]

        return Suppression(merge(self.by_customer_id, other.by_customer_id), merge(self.by_email, other.by_email))


def read_entry_file(path: Path, columns: tuple[str, ...], *, required: tuple[str, ...], what: str, row_name: str) -> pd.DataFrame:
    """A CSV of entries naming customers by customer_id and/or email (a suppression or an
    unsubscribes file): only `columns`, the `required` ones present, every value stripped text."""
    if not path.is_file():
        raise DataContractError(path, None, f"{what} must exist")
    raw = read_csv_as_text(path, row_name=row_name)
    unknown = [c for c in raw.columns if c not in columns]
    if unknown:
        raise DataContractError(path, unknown[0], f"unknown column (allowed: {list(columns)})")
    for column in required:
        if column not in raw.columns:
            raise DataContractError(path, column, f"required column missing (found: {list(raw.columns)})")
    if "customer_id" not in raw.columns and "email" not in raw.columns:
        raise DataContractError(path, None, "needs a customer_id or an email column (or both)")
    return raw.reindex(columns=list(columns)).apply(lambda c: c.astype("string").str.strip())


def load_suppression(path: Path | None) -> Suppression:
    """The suppression file (CSV: customer_id and/or email, reason, date), validated; none configured: empty."""
    if path is None:
        return Suppression.empty()
    frame = read_entry_file(path, SUPPRESSION_COLUMNS, required=("reason", "date"), what="the suppression file named by paths.suppression",
                            row_name="suppression entry")
    _reject(frame, frame["customer_id"].isna() & frame["email"].isna(), path, "customer_id", "each entry needs a customer_id or an email")
    _reject(frame, ~frame["reason"].fillna("").str.match(_REASON.pattern), path, "reason",
            "must be a lower-case word such as unsubscribed, bounced, complained")
    dates = pd.to_datetime(frame["date"], format="ISO8601", errors="coerce", utc=True)  # a date, or a timestamp as exported
    _reject(frame, dates.isna(), path, "date", "must be an ISO 8601 date or timestamp (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ)")
    return Suppression.from_entries(frame)


def _reject(frame: pd.DataFrame, mask: pd.Series, path: Path, column: str, rule: str) -> None:
    mask = mask.fillna(False).astype(bool)
    if mask.any():
        raise DataContractError(path, column, rule, offending_rows(frame, mask, list(SUPPRESSION_COLUMNS)), int(mask.sum()))


def consent_given(values: pd.Series, *, source: Path | str, column: str, customer_ids: pd.Series) -> np.ndarray:
    """Whether each customer's consent column records consent; a value that is neither yes nor no is an error."""
    text = values.astype("string").fillna("").str.strip().str.lower()
    known = text.isin(CONSENT_TRUE + CONSENT_FALSE)
    if not known.all():
        bad = pd.DataFrame({"customer_id": customer_ids.to_numpy(), column: values.to_numpy()}, index=values.index)
        raise DataContractError(source, column, f"must be one of {list(CONSENT_TRUE)} (consent) or {list(CONSENT_FALSE[:-1])} "
                                f"or empty (no consent)", offending_rows(bad, ~known, ["customer_id", column]), int((~known).sum()))
    return text.isin(CONSENT_TRUE).to_numpy()


def contact_holds(
    customers: pd.DataFrame,
    suppression: Suppression,
    *,
    consent: np.ndarray | None,
    merge_fields: tuple[str, ...],
    merge_value_max_chars: int,
) -> np.ndarray:
    """Each customer's contact hold (None: may be emailed), in CONTACT_HOLD_ORDER's precedence."""
    n = len(customers)
    ids = customers["customer_id"].astype(str)
    email = customers["email"].fillna("").astype(str).str.strip() if "email" in customers.columns else pd.Series([""] * n)
    email = email.reset_index(drop=True)
    candidates: list[tuple[np.ndarray, np.ndarray | str]] = []  # (applies, reason), in precedence order

    by_id = ids.map(suppression.by_customer_id).to_numpy(dtype=object) if len(suppression.by_customer_id) else np.full(n, None, object)
    by_email = email.str.lower().map(suppression.by_email).to_numpy(dtype=object) if len(suppression.by_email) else np.full(n, None, object)
    reason = np.where(pd.isna(by_id), by_email, by_id)
    suppressed = ~pd.isna(reason)
    candidates.append((suppressed, np.where(suppressed, HOLD_SUPPRESSED + ":" + reason.astype(str), None)))
    if consent is not None:
        candidates.append((~consent, HOLD_NO_CONSENT))
    no_email = (email == "").to_numpy()
    candidates.append((no_email, HOLD_NO_EMAIL))
    valid_email = email.str.match(EMAIL_ADDRESS_PATTERN).to_numpy() & (email.str.len() <= EMAIL_MAX_CHARS).to_numpy()
    candidates.append((~no_email & ~valid_email, HOLD_INVALID_EMAIL))
    for field in merge_fields:
        if field == "email" or field not in customers.columns:
            continue  # the address has its own rule above
        values = customers[field].fillna("").astype(str).reset_index(drop=True)
        unsafe = values.str.contains(_UNSAFE_MERGE_VALUE, regex=True).to_numpy() | (values.str.len() > merge_value_max_chars).to_numpy()
        candidates.append((unsafe, f"{HOLD_UNSAFE_MERGE_VALUE}:{field}"))

    holds = np.full(n, CONTACTABLE, dtype=object)
    for applies, why in reversed(candidates):  # the first reason in precedence order wins
        holds = np.where(applies, why, holds)
    return holds


def wave_contact_holds(contact_hold: np.ndarray, customer_ids: pd.Series, emails: pd.Series, shared: Suppression,
                       recent_sends: pd.Series, max_emails: int | None) -> np.ndarray:
    """The contact holds of one wave: the customer file's, then, for customers it lets through, the
    shared suppression list (bounces and unsubscribes that flowed back, `delivery/ledger.py`) and
    the frequency cap (`recent_sends`: messages per lower-cased address in the cap's window)."""
    holds = np.asarray(contact_hold, dtype=object).copy()
    open_ = holds == CONTACTABLE
    if len(shared):
        by_id = customer_ids.astype(str).map(shared.by_customer_id).to_numpy(dtype=object)
        by_email = emails.fillna("").astype(str).str.lower().map(shared.by_email).to_numpy(dtype=object)
        reason = np.where(pd.isna(by_id), by_email, by_id)
        suppressed = open_ & ~pd.isna(reason)
        holds[suppressed] = HOLD_SUPPRESSED + ":" + reason[suppressed].astype(str)
        open_ &= ~suppressed
    if max_emails is not None and len(recent_sends):
        sends = emails.fillna("").astype(str).str.lower().map(recent_sends).fillna(0).to_numpy()
        holds[open_ & (sends >= max_emails)] = HOLD_FREQUENCY_CAP
    return holds


def hold_explanation(hold_reason: str) -> str:
    """What a contact hold means, for the report: `suppressed:bounced` explains as `suppressed`."""
    return CONTACT_HOLD_EXPLANATIONS.get(hold_reason.split(":", 1)[0], "")


def with_contact_holds(customers: pd.DataFrame, settings: AudienceSettings, suppression_path: Path | None, *, source: Path | str) -> pd.DataFrame:
    """The validated customers with their `contact_hold` column, by the campaign's audience settings."""
    consent = None
    if settings.consent_column is not None:
        if settings.consent_column not in customers.columns:
            raise DataContractError(source, settings.consent_column, "the consent column named by audience.consent_column must exist "
                                    f"(found: {list(customers.columns)})")
        consent = consent_given(customers[settings.consent_column], source=source, column=settings.consent_column,
                                customer_ids=customers["customer_id"])
    holds = contact_holds(customers, load_suppression(suppression_path), consent=consent, merge_fields=MERGE_FIELDS,
                          merge_value_max_chars=settings.merge_value_max_chars)
    # The address is checked stripped, so it is stored (and sent to) stripped: a trailing CR/LF
    # that passed the check can never reach a header.
    if "email" in customers.columns:
        customers = customers.assign(email=customers["email"].fillna("").astype(str).str.strip())
    return customers.assign(contact_hold=holds)
