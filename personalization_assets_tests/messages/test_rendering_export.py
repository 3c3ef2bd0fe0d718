"""export_messages (DuckDB, to Parquet), the pipeline's one renderer, against a plain reference.

The reference below fills the same templates row by row in pandas, the obvious way; the renderer
must agree with it row for row, merge-field edge cases included.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from personalization_assets.messages.prompts import MERGE_FIELDS
from personalization_assets.messages.rendering import (
    FALLBACK_VALUES,
    MERGE_FIELD,
    MESSAGE_COLUMNS,
    SEND_LIST_COLUMNS,
    export_messages,
)
from personalization_assets_tests.messages.test_rendering import (
    assignments,
    customers,
    variants,
)


def fill_merge_fields(templates: pd.Series, values: pd.DataFrame) -> pd.Series:
    """Fill `{{field}}` in each row's template with that row's value (the reference's merge rule)."""
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


def reference_render(assignments: pd.DataFrame, customers: pd.DataFrame, variants: pd.DataFrame) -> pd.DataFrame:
    """The reference: one email per sent customer, by pandas merges and string concatenation."""
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


def read_parquet(path) -> pd.DataFrame:
    with duckdb.connect() as connection:
        return connection.execute("SELECT * FROM read_parquet(?)", [str(path)]).df()


def assert_same_emails(plan: pd.DataFrame, people: pd.DataFrame, templates: pd.DataFrame, tmp_path) -> pd.DataFrame:
    expected = reference_render(plan, people, templates)
    path = tmp_path / "wave" / "emails.parquet"
    send_list = export_messages(plan, people, templates, path)
    emails = read_parquet(path)
    assert list(emails.columns) == list(MESSAGE_COLUMNS)
    for column in MESSAGE_COLUMNS:
        got = emails[column].where(emails[column].notna(), None).tolist()
        want = expected[column].where(expected[column].notna(), None).tolist()
        assert got == want, column
    assert list(send_list.columns) == list(SEND_LIST_COLUMNS)
    pd.testing.assert_frame_equal(send_list, expected[list(SEND_LIST_COLUMNS)], check_dtype=False)
    assert not list(path.parent.glob(".*partial"))  # written next to its name, then renamed
    return emails


def test_same_emails_as_the_reference(tmp_path):
    assert_same_emails(assignments(), customers(), variants(), tmp_path)


def test_customers_without_merge_columns(tmp_path):
    assert_same_emails(assignments(), customers()[["customer_id", "age"]], variants(), tmp_path)


def test_customer_missing_from_the_customer_table(tmp_path):
    assert_same_emails(assignments(), customers().iloc[1:], variants(), tmp_path)


def test_values_are_never_reinterpreted(tmp_path):
    people = customers()
    people["first_name"] = ["{{email}}", "$name", "\\1 O'Brien", "'; DROP TABLE x; --", "\u3000Zoë\u00a0", "?"]
    emails = assert_same_emails(assignments(), people, variants(), tmp_path).set_index("customer_id")
    assert emails.loc["A", "body"].startswith("Hi {{email}},")
    assert emails.loc["E", "subject"] == "News for Zoë"


def test_templates_with_quotes_and_unknown_fields(tmp_path):
    templates = variants()
    templates.loc[0, "body"] = "It's {{ first_name }}'s \"day\" ? {{unknown}} {{first_name}}"
    assert_same_emails(assignments(), customers(), templates, tmp_path)


def test_nobody_sent(tmp_path):
    plan = assignments().assign(sent=False)
    emails = assert_same_emails(plan, customers(), variants(), tmp_path)
    assert emails.empty


def test_repeated_variant_keys_are_an_error_as_in_a_merge(tmp_path):
    templates = pd.concat([variants(), variants().iloc[[0]]], ignore_index=True)
    with pytest.raises(pd.errors.MergeError):
        export_messages(assignments(), customers(), templates, tmp_path / "m.parquet")


def test_large_wave_row_for_row(tmp_path):
    n = 30_000
    rng = np.random.default_rng(4)
    ids = np.char.add("C", np.arange(n).astype(str)).astype(object)
    names = np.array(["Ana", "", "  Wei ", None, "Zoë"], dtype=object)[rng.integers(0, 5, n)]
    people = pd.DataFrame({"customer_id": ids, "first_name": names, "email": np.char.add(ids.astype(str), "@x.com").astype(object)})
    segment = np.where(rng.random(n) < 0.5, "s1", "s2").astype(object)
    arm = np.where(rng.random(n) < 0.5, "control", "friendly").astype(object)
    plan = pd.DataFrame({"wave": "w", "customer_id": ids, "segment": segment, "arm": arm,
                         "variant_id": np.where(arm == "control", "control", segment + ":friendly").astype(object),
                         "sent": rng.random(n) < 0.9, "hold_reason": None})
    plan = plan.sample(frac=1.0, random_state=1).reset_index(drop=True)  # not in the customer table's order
    assert_same_emails(plan, people, variants(), tmp_path)
