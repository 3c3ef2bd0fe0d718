"""Render each sent customer's email: merge fields filled in locally, after generation.

Variants are generated from segment-level facts only; the customer's own values enter here, on
this machine, and never travel to a service. Rendering is vectorized per variant: a campaign has a
few dozen variants, each filled for all of its customers in one column operation.
"""

from __future__ import annotations

import re

import pandas as pd

from personalization_assets.prompts import MERGE_FIELDS

MERGE_FIELD = re.compile(r"\{\{\s*(\w+)\s*\}\}")
# What a greeting says when a customer has no first name on file.
FALLBACK_VALUES = {"first_name": "there", "email": ""}
MESSAGE_COLUMNS = ("wave", "customer_id", "segment", "arm", "variant_id", "email", "subject", "body")


def fill_merge_fields(templates: pd.Series, values: pd.DataFrame) -> pd.Series:
    """Fill `{{field}}` in each row's template with that row's value.

    Vectorized per distinct template: a campaign has a few dozen templates and many rows, so each
    template is split once and its pieces concatenated with whole value columns.
    """
    filled_values = {}
    for name in MERGE_FIELDS:
        column = values[name] if name in values.columns else pd.Series("", index=values.index)
        cleaned = column.fillna("").astype(str).str.strip()
        filled_values[name] = cleaned.where(cleaned != "", FALLBACK_VALUES[name])
    result = pd.Series("", index=templates.index, dtype=object)
    for template, rows in templates.groupby(templates, sort=False).groups.items():
        pieces = MERGE_FIELD.split(str(template))  # text, field, text, field, ..., text
        out = pd.Series(pieces[0], index=rows, dtype=object)
        for name, text in zip(pieces[1::2], pieces[2::2]):
            # An unknown field stays visible as written; safety screening blocks such variants.
            value = filled_values[name].loc[rows] if name in filled_values else "{{" + name + "}}"
            out = out + value + text
        result.loc[rows] = out
    return result


def render_messages(assignments: pd.DataFrame, customers: pd.DataFrame, variants: pd.DataFrame) -> pd.DataFrame:
    """One send-ready email per customer who is sent one; held-out customers get no row."""
    sent = assignments.loc[assignments["sent"].astype(bool), ["wave", "customer_id", "segment", "arm", "variant_id"]]
    merge_columns = ["customer_id", *[c for c in MERGE_FIELDS if c in customers.columns]]
    frame = sent.merge(customers[merge_columns], on="customer_id", how="left", validate="one_to_one")
    frame = frame.merge(
        variants[["segment", "variant_id", "subject", "body"]], on=["segment", "variant_id"], how="left", validate="many_to_one"
    )
    frame["subject"] = fill_merge_fields(frame["subject"], frame)
    frame["body"] = fill_merge_fields(frame["body"], frame)
    if "email" not in frame.columns:
        frame["email"] = ""
    return frame[list(MESSAGE_COLUMNS)].reset_index(drop=True)
