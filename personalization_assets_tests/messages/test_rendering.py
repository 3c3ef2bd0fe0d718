"""Rendering send-ready emails: merge fields filled locally, one row per sent customer.

Every test runs the pipeline's renderer, `export_messages`, and reads its Parquet file back.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from personalization_assets.messages.rendering import MESSAGE_COLUMNS, export_messages


def rendered_emails(assignments: pd.DataFrame, customers: pd.DataFrame, variants: pd.DataFrame) -> pd.DataFrame:
    """The emails `export_messages` writes for this wave, as a frame."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "emails.parquet"
        export_messages(assignments, customers, variants, path)
        with duckdb.connect() as connection:
            return connection.execute("SELECT * FROM read_parquet(?)", [str(path)]).df()


def variants() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"segment": "s1", "variant_id": "control", "subject": "News for {{first_name}}",
             "body": "Hi {{first_name}},\n\nWe write to {{ email }} today.\n\nBye"},
            {"segment": "s1", "variant_id": "s1:friendly", "subject": "Picked for you",
             "body": "Hi {{first_name}}, see [Your Company Name] and {{coupon_code}}."},
            {"segment": "s2", "variant_id": "control", "subject": "News for {{first_name}}",
             "body": "Hi {{first_name}},\n\nWe write to {{ email }} today.\n\nBye"},
            {"segment": "s2", "variant_id": "s2:friendly", "subject": "Hello {{first_name}}!",
             "body": "Dear {{first_name}} ({{email}})"},
        ]
    )


def customers() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["A", "B", "C", "D", "E", "F"],
            "first_name": ["Ana", None, "  ", "Wei", " Liam ", "Zara"],
            "email": ["ana@x.com", "b@x.com", "c@x.com", None, "liam@x.com", "zara@x.com"],
            "age": [30, 40, 50, 60, 70, 80],
        }
    )


def assignments() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "wave": "2026-01-05",
            "customer_id": ["A", "B", "C", "D", "E", "F"],
            "segment": ["s1", "s1", "s2", "s2", "s1", "s2"],
            "arm": ["control", "friendly", "control", "friendly", "control", "friendly"],
            "variant_id": ["control", "s1:friendly", "control", "s2:friendly", "control", "s2:friendly"],
            "sent": [True, True, True, True, True, False],
            "hold_reason": [None, None, None, None, None, "variant_blocked"],
        }
    )


def rendered() -> pd.DataFrame:
    return rendered_emails(assignments(), customers(), variants()).set_index("customer_id")


def test_one_row_per_sent_customer_with_the_contract_columns():
    frame = rendered_emails(assignments(), customers(), variants())
    assert list(frame.columns) == list(MESSAGE_COLUMNS)
    assert sorted(frame["customer_id"]) == ["A", "B", "C", "D", "E"]
    assert frame["customer_id"].is_unique
    assert frame.index.equals(pd.RangeIndex(len(frame)))


def test_held_out_customers_get_no_row():
    frame = rendered()
    assert "F" not in frame.index
    assert not frame["body"].str.contains("Zara").any()


def test_merge_fields_are_filled_per_customer():
    frame = rendered()
    assert frame.loc["A", "subject"] == "News for Ana"
    assert frame.loc["A", "body"] == "Hi Ana,\n\nWe write to ana@x.com today.\n\nBye"
    assert frame.loc["E", "body"].startswith("Hi Liam,")  # trimmed
    assert frame.loc["E", "email"] == "liam@x.com"
    assert frame.loc["A", "variant_id"] == "control" and frame.loc["A", "segment"] == "s1"
    assert (frame["wave"] == "2026-01-05").all()


def test_missing_or_blank_first_name_becomes_there():
    frame = rendered()
    assert frame.loc["B", "body"].startswith("Hi there, ")
    assert frame.loc["C", "subject"] == "News for there"
    assert frame.loc["C", "body"].startswith("Hi there,\n\n")


def test_missing_email_is_blank_not_nan():
    frame = rendered()
    assert frame.loc["D", "body"] == "Dear Wei ()"
    assert frame.loc["D", "subject"] == "Hello Wei!"


def test_unknown_field_stays_visible():
    body = rendered().loc["B", "body"]
    assert "{{coupon_code}}" in body
    assert "[Your Company Name]" in body


def test_customers_without_merge_columns():
    frame = rendered_emails(assignments(), customers()[["customer_id", "age"]], variants()).set_index("customer_id")
    assert frame.loc["A", "subject"] == "News for there"
    assert frame.loc["A", "body"] == "Hi there,\n\nWe write to  today.\n\nBye"
    assert (frame["email"] == "").all()


def test_merge_values_are_not_reinterpreted():
    people = customers()
    people["first_name"] = ["{{email}}", "$name", "Ana", "Wei", "Liam", "Zara"]
    frame = rendered_emails(assignments(), people, variants()).set_index("customer_id")
    assert [frame.loc["A", "subject"], frame.loc["B", "body"][:9]] == ["News for {{email}}", "Hi $name,"]


def test_works_on_100k_rows():
    n = 100_000
    ids = np.char.add("C", np.arange(n).astype(str)).astype(object)
    people = pd.DataFrame({"customer_id": ids, "first_name": np.where(np.arange(n) % 7 == 0, "", "Kofi").astype(object),
                           "email": np.char.add(ids.astype(str), "@x.com").astype(object)})
    segment = np.where(np.arange(n) % 2 == 0, "s1", "s2").astype(object)
    arm = np.where(np.arange(n) % 3 == 0, "control", "friendly").astype(object)
    plan = pd.DataFrame({"wave": "w", "customer_id": ids, "segment": segment, "arm": arm,
                         "variant_id": np.where(arm == "control", "control", segment + ":friendly").astype(object),
                         "sent": np.arange(n) % 10 != 0, "hold_reason": None})
    frame = rendered_emails(plan, people, variants())
    assert len(frame) == int(plan["sent"].sum())
    assert frame["customer_id"].is_unique
    assert not frame["subject"].str.contains("{{first_name}}", regex=False).any()
    assert not frame["body"].str.contains("{{first_name}}", regex=False).any()
    by_id = frame.set_index("customer_id")
    templates = variants().set_index(["segment", "variant_id"])["body"]
    for i in range(1, 60):
        if i % 10 == 0:
            assert f"C{i}" not in by_id.index
            continue
        name = "there" if i % 7 == 0 else "Kofi"
        template = templates[(segment[i], plan.loc[i, "variant_id"])]
        expected = template.replace("{{first_name}}", name).replace("{{ email }}", f"C{i}@x.com").replace("{{email}}", f"C{i}@x.com")
        assert by_id.loc[f"C{i}", "body"] == expected, i
