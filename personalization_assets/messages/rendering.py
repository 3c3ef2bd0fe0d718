"""Render each sent customer's email: merge fields filled in locally, after generation.

Variants are generated from segment-level facts only; the customer's own values enter here, on
this machine, and never travel to a service. Rendering is vectorized per variant: a campaign has a
few dozen variants, each filled for all of its customers in one column operation.

One renderer, `export_messages`: DuckDB fills the templates in parallel and streams the emails
to a Parquet file, so a million rendered bodies (about a gigabyte of text) never sit in Python
memory or in the warehouse; the warehouse keeps the send list (who gets which variant, at which
address) and the file keeps the emails. The merge rule: `{{field}}` takes the customer's value,
trimmed; a missing or blank first name reads "there" (FALLBACK_VALUES); an unknown field stays
visible as written (the safety screen blocks such variants); no value is ever read as a field or
as SQL.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from personalization_assets.audience.customers import PYTHON_WHITESPACE
from personalization_assets.experiment.joins import left_join_rows, take
from personalization_assets.messages.prompts import MERGE_FIELDS

MERGE_FIELD = re.compile(r"\{\{\s*(\w+)\s*\}\}")
# What a greeting says when a customer has no first name on file.
FALLBACK_VALUES = {"first_name": "there", "email": ""}
MESSAGE_COLUMNS = ("wave", "customer_id", "segment", "arm", "variant_id", "email", "subject", "body")
# The send list the warehouse keeps: MESSAGE_COLUMNS without the rendered text.
SEND_LIST_COLUMNS = MESSAGE_COLUMNS[:-2]
EXPORT_FILE = "personalized_messages.parquet"
ROLLOUT_EXPORT_FILE = "rollout_messages.parquet"  # the rollout's emails (`experiment/rollout.py`), beside the test's
SEND_KEYS = ("wave", "segment", "arm", "variant_id")


def _template_sql(template: object, fields: dict[str, str], params: list[object]) -> str:
    """A SQL expression that fills `template` by the merge rule; its text goes to `params`.

    Text pieces are bound parameters and customer values are column references, so nothing a
    template or a customer value contains is ever interpreted as SQL or as another field.
    """
    if template is None or (isinstance(template, float) and np.isnan(template)):
        params.append("")  # no variant matched: the row's text is empty
        return "?"
    pieces = MERGE_FIELD.split(str(template))
    parts = []
    for index, piece in enumerate(pieces):
        if index % 2 == 0:
            params.append(piece)
            parts.append("?")
        elif piece in fields:
            parts.append(fields[piece])
        else:  # an unknown field stays visible as written; safety screening blocks such variants
            params.append("{{" + piece + "}}")
            parts.append("?")
    return f"concat({', '.join(parts)})" if len(parts) > 1 else parts[0]


@dataclass
class SendRows:
    """The sent customers of a wave, ready to be filled into their variants' templates in DuckDB.

    `frame` (registered as `sent_messages`) has one row per sent customer: its group `g` (one per
    distinct (wave, segment, arm, variant)), customer_id, email and the raw merge values;
    `values_sql` selects from it the cleaned values `v<i>` (by the merge rule) with `values_params`.
    `fields` names the column of each merge field the templates use; `keys` and `templates` hold
    each group's send keys and its variant's subject and body (None when no variant matched).
    """

    frame: pd.DataFrame
    values_sql: str
    values_params: list[object]
    fields: dict[str, str]
    keys: list[dict[str, object]]
    templates: list[dict[str, object]]
    send_list: pd.DataFrame

    def cases(self, name: str, templates: list[object], fields: Mapping[str, str] | None = None) -> tuple[str, list[object]]:
        """`CASE g ... END AS name`: each group's template filled by the merge rule, and its parameters.

        `fields` maps a field to the SQL expression of its value (default: the cleaned values), so a
        caller can escape them (HTML) or add per-customer fields of its own (an unsubscribe link)."""
        params: list[object] = []
        whens = [f"WHEN {g} THEN {_template_sql(t, self.fields if fields is None else fields, params)}" for g, t in enumerate(templates)]
        return (f"CASE g {' '.join(whens)} END AS {name}" if whens else f"CAST(NULL AS VARCHAR) AS {name}"), params

    def constants(self, name: str, values: list[object]) -> tuple[str, list[object]]:
        """`CASE g ... END AS name`: one value per group (a send key), and its parameters."""
        whens = " ".join(f"WHEN {g} THEN ?" for g in range(len(values)))
        return (f"CASE g {whens} END AS {name}" if values else f"CAST(NULL AS VARCHAR) AS {name}"), [
            None if pd.isna(value) else str(value) for value in values]

    def key_columns(self) -> dict[str, tuple[str, list[object]]]:
        return {name: self.constants(name, [key[name] for key in self.keys]) for name in SEND_KEYS}


def send_rows(assignments: pd.DataFrame, customers: pd.DataFrame, variants: pd.DataFrame) -> SendRows:
    """The sent customers of `assignments`, their addresses and merge values, grouped by variant."""
    sent_mask = assignments["sent"].astype(bool).to_numpy()
    sent = {column: assignments[column].to_numpy()[sent_mask] for column in ("customer_id", *SEND_KEYS)}
    # Joined before the sent filter: a wave's assignments list its customers in the customer
    # table's order, and the same keys in the same order join at the cost of one comparison.
    (rows,) = left_join_rows(assignments["customer_id"].to_numpy(), customers["customer_id"].to_numpy())
    rows = rows[sent_mask]
    email = take(customers["email"].to_numpy(dtype=object), rows, np.nan) if "email" in customers.columns else np.full(len(rows), "", dtype=object)

    # One group per distinct (wave, segment, arm, variant): a few dozen, each one template pair.
    codes = [pd.factorize(sent[key], use_na_sentinel=False) for key in SEND_KEYS]
    combined = np.zeros(len(rows), dtype=np.int64)
    for key_codes, uniques in codes:
        combined = combined * max(len(uniques), 1) + key_codes
    group, first_rows = np.unique(combined, return_index=True)
    group_of_row = np.searchsorted(group, combined).astype(np.int32)
    templates = variants.drop_duplicates(["segment", "variant_id"], keep=False).set_index(["segment", "variant_id"])
    if len(templates) != len(variants):
        raise pd.errors.MergeError("Merge keys are not unique in right dataset; not a many-to-one merge")

    keys = [{name: sent[name][first] for name in SEND_KEYS} for first in first_rows]
    group_templates = []
    for key in keys:
        match = (str(key["segment"]), str(key["variant_id"]))
        found = templates.loc[match] if match in templates.index else None
        group_templates.append({name: None if found is None else found[name] for name in ("subject", "body")})
    used = {field for pair in group_templates for text in pair.values() if isinstance(text, str) for field in MERGE_FIELD.findall(text)}

    columns: dict[str, np.ndarray] = {"g": group_of_row, "customer_id": sent["customer_id"], "email": email}
    fields: dict[str, str] = {}
    value_sql, value_params = [], []
    for index, name in enumerate(MERGE_FIELDS):
        if name not in used:
            continue  # no template asks for it
        column = email if name == "email" else (
            take(customers[name].to_numpy(dtype=object), rows, None) if name in customers.columns else np.full(len(rows), None, dtype=object)
        )
        if pd.api.types.infer_dtype(column, skipna=True) not in ("string", "empty"):
            column = pd.Series(column, dtype=object).fillna("").astype(str).to_numpy(dtype=object)  # values as text, missing as ''
        source = f"v{index}"
        if column is email:
            source = "email"  # the send address itself: DuckDB reads the column once
        else:
            columns[source] = column
        fields[name] = f"v{index}"
        # The merge rule's cleaning in SQL: missing -> '', Python's str.strip(), then the fallback.
        # trim() with the whole whitespace set is slow, so it runs only where an end is whitespace.
        text = f"coalesce(CAST({source} AS VARCHAR), '')"
        stripped = f"CASE WHEN contains(?, left({text}, 1)) OR contains(?, right({text}, 1)) THEN trim({text}, ?) ELSE {text} END"
        value_sql.append(f"coalesce(nullif({stripped}, ''), ?) AS v{index}")
        value_params += [PYTHON_WHITESPACE] * 3 + [FALLBACK_VALUES[name]]
    values = ", ".join(["g", "customer_id", "CAST(email AS VARCHAR) AS email", *value_sql])
    send_list = pd.DataFrame({name: sent[name] for name in ("customer_id", *SEND_KEYS)})
    send_list["email"] = email
    return SendRows(pd.DataFrame(columns), values, value_params, fields, keys, group_templates, send_list[list(SEND_LIST_COLUMNS)])


def export_messages(assignments: pd.DataFrame, customers: pd.DataFrame, variants: pd.DataFrame, path: Path | str) -> pd.DataFrame:
    """Render every sent customer's email into the Parquet file `path`; return the send list.

    The file holds MESSAGE_COLUMNS, one row per sent customer in the send list's order; the
    returned frame is its SEND_LIST_COLUMNS. The file is written next to its final name and renamed into place,
    so a failed run never leaves a partial file behind.
    """
    rows = send_rows(assignments, customers, variants)
    columns = rows.key_columns() | {name: rows.cases(name, [pair[name] for pair in rows.templates]) for name in ("subject", "body")}
    select = ", ".join(columns[name][0] if name in columns else name for name in MESSAGE_COLUMNS)
    # `?` parameters bind in the order they appear in the statement: the outer SELECT's, then the values'.
    params = [value for name in MESSAGE_COLUMNS if name in columns for value in columns[name][1]] + rows.values_params
    write_parquet(f"SELECT {select} FROM (SELECT {rows.values_sql} FROM sent_messages)", params, rows.frame, path)
    return rows.send_list


def write_parquet(query: str, params: list[object], frame: pd.DataFrame, path: Path | str) -> None:
    """COPY `query` (over `frame`, registered as `sent_messages`) to the Parquet file `path`,
    written beside it and renamed into place: a failed run never leaves a partial file."""
    import duckdb

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with duckdb.connect() as connection:
        connection.register("sent_messages", frame)
        target = partial.as_posix().replace("'", "''")
        # Row order is the send list's: a projection of one scan keeps insertion order.
        connection.execute(f"COPY ({query}) TO '{target}' (FORMAT parquet, COMPRESSION zstd)", params)
    os.replace(partial, path)
