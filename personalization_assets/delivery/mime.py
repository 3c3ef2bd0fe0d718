"""Each sent customer's email as a real MIME message, built in DuckDB for a whole wave at once.

A message is `multipart/alternative`: the text part and the HTML part (`delivery/compliance.py`'s
layout, rendered once per variant; each customer's merge values are HTML-escaped into it, the
escape Jinja's autoescape applies), both UTF-8 in base64 lines of 76 characters. Its headers:
`From` and `Reply-To` from the campaign's sender, `To`, `Subject` (RFC 2047 encoded words when it
is not short plain ASCII), `Date`, a `Message-ID` that is a hash of (campaign, wave, customer), so a
resend is recognisable as the same message, `List-Unsubscribe` (a mailto and an https link) and
`List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058).

Each customer's unsubscribe link carries a token: HMAC-SHA256 of the customer id under the
`CPO_UNSUBSCRIBE_SECRET` key, computed in SQL (`token_sql`), so the endpoint that takes the
one-click POST (or `cpo unsubscribes import`) can tell a real request from a forged one. Without
that variable the messages are signed with a published test key, recorded in their `signed_with`
column, and SMTP delivery refuses them.

The messages are written as a Parquet file of raw messages (`raw`, ASCII with CRLF line ends,
ready for SMTP's DATA) with the send keys, the Message-ID and each message's SHA-256.
"""

from __future__ import annotations

import datetime as dt
import email.header
import email.utils
import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from personalization_assets.campaign.config import CampaignConfig, SenderSettings
from personalization_assets.campaign.errors import DataContractError
from personalization_assets.delivery.compliance import EmailLayout
from personalization_assets.messages.rendering import (
    SEND_KEYS,
    send_rows,
    write_parquet,
)

MESSAGES_FILE = "email_messages.parquet"
MESSAGE_FILE_COLUMNS = ("wave", "customer_id", "segment", "arm", "variant_id", "email", "message_id", "raw_sha256", "signed_with", "raw")
SECRET_ENV = "CPO_UNSUBSCRIBE_SECRET"
# Published on purpose: messages signed with it are for looking at, never for delivery.
TEST_KEY = b"cpo-published-test-key:not-for-delivery"
TEST_KEY_NAME = "test key"
TOKEN_PURPOSE = "cpo-unsubscribe-v1:"
TOKEN_HEX_CHARS = 32  # 128 bits of the HMAC
CRLF = "chr(13) || chr(10)"


@dataclass(frozen=True)
class SigningKey:
    """The key of the unsubscribe tokens, and which one it is (the variable's name, or the test key)."""

    secret: bytes
    name: str

    def __repr__(self) -> str:  # never print the secret
        return f"SigningKey({self.name})"

    @classmethod
    def from_secret(cls, secret: str | None) -> SigningKey:
        return cls(secret.encode(), SECRET_ENV) if secret else cls(TEST_KEY, TEST_KEY_NAME)


def literal(text: str) -> str:
    """A SQL string literal of a value the campaign file gave (validated: one line, no control characters)."""
    return "'" + text.replace("'", "''") + "'"


def token_sql(key: SigningKey, customer_id: str = "customer_id") -> tuple[str, list[object]]:
    """SQL for each customer's unsubscribe token, and its parameters: the first 32 hex digits of
    HMAC-SHA256(key, "cpo-unsubscribe-v1:" + customer id) (RFC 2104, written out: DuckDB has SHA-256
    but no HMAC). The key travels as a bound parameter, never in the statement's text."""
    block = key.secret if len(key.secret) <= 64 else hashlib.sha256(key.secret).digest()
    block = block.ljust(64, b"\0")
    inner = bytes(b ^ 0x36 for b in block)
    outer = bytes(b ^ 0x5C for b in block)
    sql = (f"substr(sha256(?::BLOB || unhex(sha256(?::BLOB || encode({literal(TOKEN_PURPOSE)} || CAST({customer_id} AS VARCHAR))))), "
           f"1, {TOKEN_HEX_CHARS})")
    return sql, [outer, inner]


def message_id_sql(campaign_id: str, wave: str, domain: str) -> str:
    """`<hash@domain>`: the same (campaign, wave, customer) always gets the same Message-ID."""
    return (f"'<' || substr(sha256({literal(campaign_id)} || chr(31) || {literal(wave)} || chr(31) || CAST(customer_id AS VARCHAR)), 1, 32)"
            f" || '@' || {literal(domain)} || '>'")


def html_escaped(expression: str) -> str:
    """The value HTML-escaped in SQL, as markupsafe (Jinja's autoescape) escapes it."""
    for char, entity in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&#34;"), ("'", "&#39;")):
        expression = f"replace({expression}, {literal(char)}, {literal(entity)})"
    return expression


def _base64_lines(expression: str) -> str:
    """UTF-8 text as base64 in lines of 76 characters (RFC 2045), text line ends as CRLF first."""
    canonical = f"replace(replace({expression}, chr(13), ''), chr(10), {CRLF})"
    wrapped = f"regexp_replace(to_base64(encode({canonical})), '(.{{76}})', concat('\\1', {CRLF}), 'g')"
    return f"rtrim({wrapped}, {CRLF})"


def _subject_header(expression: str) -> str:
    """The Subject as written when it is short printable ASCII, else RFC 2047 encoded words of at most
    ten characters each (at most 68 octets a word, whole characters only), folded onto lines."""
    words = f"list_transform(range(0, length({expression}), 10), lambda i: '=?utf-8?b?' || to_base64(encode(substr({expression}, i + 1, 10))) || '?=')"
    return (f"CASE WHEN regexp_full_match({expression}, '[ -~]{{0,70}}') AND NOT contains({expression}, '=?') THEN {expression} "
            f"ELSE array_to_string({words}, {CRLF} || ' ') END")


def unsubscribe_links_sql(sender: SenderSettings) -> tuple[str, str]:
    """SQL for each customer's https unsubscribe link and mailto link, from its `customer_id` and `token` columns."""
    separator = "&" if "?" in sender.unsubscribe_url else "?"
    customer = "url_encode(CAST(customer_id AS VARCHAR))"
    link = f"{literal(sender.unsubscribe_url + separator + 'u=')} || {customer} || '&t=' || token"
    mailto = f"{literal('mailto:' + sender.unsubscribe_mailto + '?subject=unsubscribe%20')} || {customer} || '%20' || token"
    return link, mailto


def from_header(sender: SenderSettings) -> str:
    """`Name <address>`; a name that is not plain ASCII as RFC 2047 encoded words, folded so no
    word passes 75 characters (one `formataddr` word would, for a long name)."""
    if sender.from_name.isascii():
        return email.utils.formataddr((sender.from_name, sender.from_address))
    name = email.header.Header(sender.from_name, "utf-8", header_name="From").encode(linesep="\r\n", maxlinelen=76)
    return f"{name} <{sender.from_address}>"


def build_messages(assignments: pd.DataFrame, customers: pd.DataFrame, variants: pd.DataFrame, *, config: CampaignConfig, wave: str,
                   layout: EmailLayout, key: SigningKey, path: Path | str, now: dt.datetime | None = None) -> int:
    """Build every sent customer's message into the Parquet file `path` (MESSAGE_FILE_COLUMNS, in
    the send list's order); returns how many messages it wrote."""
    sender = config.sender
    if sender is None:
        raise ValueError("build_messages needs the campaign's sender (delivery/compliance.screen_campaign checks it first)")
    rows = send_rows(assignments, customers, variants)
    missing = [f"{keys['segment']}/{keys['variant_id']}" for keys, pair in zip(rows.keys, rows.templates) if pair["body"] is None]
    if missing:
        # Never a message without its subject, footer, postal address and unsubscribe link.
        raise DataContractError("assignments", "variant_id", "every sent customer's variant must be in message_variants", missing,
                                n_offending=len(missing))
    html_templates, text_templates = [], []
    for pair in rows.templates:
        html, text = layout.render(sender, subject=str(pair["subject"] or ""), body=str(pair["body"]), unsubscribe_url="{{unsubscribe_url}}")
        html_templates.append(html)
        text_templates.append(text)
    per_customer = {"unsubscribe_url": "unsubscribe_url"}
    html_fields = {name: html_escaped(column) for name, column in (rows.fields | per_customer).items()}
    parts = rows.key_columns() | {
        "subject": rows.cases("subject", [pair["subject"] for pair in rows.templates]),
        "text_part": rows.cases("text_part", text_templates, rows.fields | per_customer),
        "html_part": rows.cases("html_part", html_templates, html_fields),
    }
    order = [*SEND_KEYS, "subject", "text_part", "html_part"]
    middle = ", ".join(["customer_id", "email", "message_id", "unsubscribe_url", "unsubscribe_mailto", *(parts[name][0] for name in order)])
    middle_params = [value for name in order for value in parts[name][1]]

    boundary = "=_cpo_" + hashlib.sha256(f"{config.campaign_id}\x1f{wave}".encode()).hexdigest()[:24]
    date = email.utils.format_datetime(now or dt.datetime.now(dt.timezone.utc))
    headers = [
        f"'From: ' || {literal(from_header(sender))}",
        f"'Reply-To: ' || {literal(sender.reply_to)}",
        "'To: ' || email",
        f"'Subject: ' || {_subject_header('subject')}",
        f"'Date: ' || {literal(date)}",
        "'Message-ID: ' || message_id",
        f"'List-Unsubscribe: <' || unsubscribe_mailto || '>,' || {CRLF} || ' <' || unsubscribe_url || '>'",
        "'List-Unsubscribe-Post: List-Unsubscribe=One-Click'",
        "'MIME-Version: 1.0'",
        f"'Content-Type: multipart/alternative; boundary=\"{boundary}\"'",
    ]
    body = [
        f"'--{boundary}'", "'Content-Type: text/plain; charset=\"utf-8\"'", "'Content-Transfer-Encoding: base64'", "''",
        _base64_lines("text_part"),
        f"'--{boundary}'", "'Content-Type: text/html; charset=\"utf-8\"'", "'Content-Transfer-Encoding: base64'", "''",
        _base64_lines("html_part"),
        f"'--{boundary}--'",
    ]
    raw = f"concat_ws({CRLF}, {', '.join(headers)}, '', {', '.join(body)}, '')"
    token, token_params = token_sql(key)
    message_id = message_id_sql(config.campaign_id, wave, sender.message_domain)
    link, mailto = unsubscribe_links_sql(sender)
    query = (
        "SELECT wave, customer_id, segment, arm, variant_id, email, message_id, sha256(raw) AS raw_sha256, signed_with, raw FROM ("
        f"SELECT *, {literal(key.name)} AS signed_with, {raw} AS raw "
        f"FROM (SELECT {middle} FROM ("
        f"SELECT *, {link} AS unsubscribe_url, {mailto} AS unsubscribe_mailto FROM ("
        f"SELECT {rows.values_sql}, {token} AS token, {message_id} AS message_id FROM sent_messages))))"
    )
    # `?` parameters bind in the order they appear in the statement: the templates', then the values' and the key's.
    write_parquet(query, middle_params + rows.values_params + token_params, rows.frame, path)
    return len(rows.send_list)


def unsubscribe_tokens(customer_ids: pd.Series, key: SigningKey) -> pd.Series:
    """Each customer's token, by the same SQL as the messages (for checking an imported token)."""
    import duckdb

    sql, params = token_sql(key, "customer_id")
    with duckdb.connect() as connection:
        connection.register("ids", pd.DataFrame({"customer_id": customer_ids.astype(str).to_numpy(dtype=object)}))
        tokens = connection.execute(f"SELECT {sql} AS token FROM ids", params).df()["token"]
    return pd.Series(tokens.to_numpy(dtype=object), index=customer_ids.index)
