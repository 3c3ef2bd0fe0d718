"""An ESP import bundle: for tools that import a campaign rather than take SMTP.

`<exports>/<wave>/esp/`: `recipients.csv` (one row per message: customer_id, email, message_id,
segment, arm, variant_id, each merge value the templates use as the merge rule fills it, and the
customer's signed unsubscribe links), `variants.csv` (variant_id, segment, subject, html_file,
text_file) and `templates/<variant>.html` and `.txt`, the layout rendered for each variant with
`{{field}}` placeholders for the recipients' columns. Every file is written beside its name and
renamed into place, the folder last.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pandas as pd

from personalization_assets.campaign.config import CampaignConfig
from personalization_assets.delivery.compliance import EmailLayout
from personalization_assets.delivery.mime import (
    SigningKey,
    literal,
    message_id_sql,
    token_sql,
    unsubscribe_links_sql,
)
from personalization_assets.messages.rendering import send_rows, write_parquet

RECIPIENTS_FILE = "recipients.csv"
VARIANTS_FILE = "variants.csv"


def write_bundle(assignments: pd.DataFrame, customers: pd.DataFrame, variants: pd.DataFrame, *, config: CampaignConfig, wave: str,
                 layout: EmailLayout, key: SigningKey, folder: Path, only: pd.Series | None = None) -> pd.Series:
    """Write the bundle for the sent customers (those in `only`, when given) to `folder`; returns
    the customer ids it lists, as `published_recipients` reads them."""
    import duckdb

    sender = config.sender
    rows = send_rows(assignments, customers, variants)
    partial = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "templates").mkdir(parents=True)
    listed = []
    for key_values, pair in zip(rows.keys, rows.templates):
        if pair["body"] is None:
            continue
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", str(key_values["variant_id"]))
        html, text = layout.render(sender, subject=str(pair["subject"] or ""), body=str(pair["body"]), unsubscribe_url="{{unsubscribe_url}}")
        (partial / "templates" / f"{name}.html").write_text(html)
        (partial / "templates" / f"{name}.txt").write_text(text)
        listed.append({"variant_id": key_values["variant_id"], "segment": key_values["segment"], "subject": pair["subject"],
                       "html_file": f"templates/{name}.html", "text_file": f"templates/{name}.txt"})
    pd.DataFrame(listed, columns=["variant_id", "segment", "subject", "html_file", "text_file"]).drop_duplicates("variant_id").to_csv(
        partial / VARIANTS_FILE, index=False)

    keys = rows.key_columns()
    token, token_params = token_sql(key)
    link, mailto = unsubscribe_links_sql(sender)
    merge = ", ".join(f"{column} AS {name}" for name, column in rows.fields.items())
    query = (f"SELECT customer_id, email, message_id, {keys['segment'][0]}, {keys['arm'][0]}, {keys['variant_id'][0]}"
             f"{', ' + merge if merge else ''}, {link} AS unsubscribe_url, {mailto} AS unsubscribe_mailto FROM ("
             f"SELECT {rows.values_sql}, {token} AS token, {message_id_sql(config.campaign_id, wave, sender.message_domain)} AS message_id "
             "FROM sent_messages)")
    params = keys["segment"][1] + keys["arm"][1] + keys["variant_id"][1] + rows.values_params + token_params
    staged = partial / ".recipients.parquet"
    write_parquet(query, params, rows.frame, staged)
    with duckdb.connect() as connection:
        connection.register("wanted", pd.DataFrame({"customer_id": (only if only is not None else rows.send_list["customer_id"]).astype(str)}))
        connection.execute(f"COPY (SELECT r.* FROM read_parquet({literal(staged.as_posix())}) r SEMI JOIN wanted w ON r.customer_id = w.customer_id) "
                           f"TO {literal((partial / RECIPIENTS_FILE).as_posix())} (HEADER, DELIMITER ',')")
    staged.unlink()
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(partial, folder)
    return published_recipients(folder)


def published_recipients(folder: Path) -> pd.Series:
    """The customer ids a published bundle lists."""
    import duckdb

    with duckdb.connect() as connection:
        return connection.execute(f"SELECT customer_id FROM read_csv({literal((folder / RECIPIENTS_FILE).as_posix())}, all_varchar=true)").df()[
            "customer_id"]
