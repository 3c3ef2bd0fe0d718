"""Who may be emailed: suppression, consent, addresses and merge values (issue 12, items 3 and 5)."""

import duckdb
import numpy as np
import pandas as pd
import pytest

from personalization_assets.audience.eligibility import (
    Suppression,
    consent_given,
    contact_holds,
    load_suppression,
)
from personalization_assets.campaign.errors import DataContractError
from personalization_assets.cli import commands as cli
from personalization_assets.warehouse import DuckDBWarehouse
from personalization_assets_tests.conftest import TEST_WAVE


def _customers(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    base = {"customer_id": [f"C{i}" for i in range(n)], "first_name": ["Ana"] * n, "email": [f"c{i}@example.com" for i in range(n)]}
    return pd.DataFrame({**base, **columns})


def _holds(frame: pd.DataFrame, suppression: Suppression | None = None, consent=None, max_chars: int = 100) -> list:
    holds = contact_holds(frame, suppression or Suppression.empty(), consent=consent,
                          merge_fields=("first_name", "email"), merge_value_max_chars=max_chars)
    return [hold or None for hold in holds]  # "" (checked, may be emailed) reads as None here


@pytest.mark.parametrize("name", [
    '<a href="http://evil.example/x">Ana</a>', "Ana\r\nBcc: everyone@example.com", "Ana\nSmith", "x" * 10_000_000,
    "\u202eanA", "Ana\u200b", "{{email}}", "{% raw %}", "${jndi}", "Ana <img src=x onerror=alert(1)>", "Visit tinyurl.com/x8k2",
    "www.example.org", "https://example.org", "Ana&#x3c;", "Ana\x00",
])
def test_an_unsafe_first_name_holds_the_customer_out(name):
    assert _holds(_customers(first_name=[name, "Ana"])) == ["unsafe_merge_value:first_name", None]


@pytest.mark.parametrize("name", ["O'Brien", "Anne-Marie", "José", "Zoë", "李", "Mary Jane", "Dr. Smith", "", "J.R.", "Ana (Annie)"])
def test_ordinary_first_names_pass(name):
    assert _holds(_customers(first_name=[name])) == [None]


def test_merge_value_length_cap_is_the_campaigns():
    assert _holds(_customers(first_name=["x" * 12]), max_chars=12) == [None]
    assert _holds(_customers(first_name=["x" * 13]), max_chars=12) == ["unsafe_merge_value:first_name"]


def test_addresses_missing_or_invalid_are_held_out():
    emails = ["", "   ", "ana@example.com", "not-an-address", "a@b@example.com", "ana@example.com\r\nBcc: x@example.com",
              "Ana <ana@example.com>", "ana@localhost", "a" * 250 + "@example.com", None]
    assert _holds(_customers(email=emails)) == [
        "no_email", "no_email", None, "invalid_email", "invalid_email", "invalid_email", "invalid_email", "invalid_email",
        "invalid_email", "no_email",
    ]


def test_suppression_by_id_or_address_case_insensitive_with_its_reason(tmp_path):
    path = tmp_path / "suppression.csv"
    path.write_text("customer_id,email,reason,date\nC0,,unsubscribed,2026-01-02\n,C2@EXAMPLE.com,bounced,2026-01-03\n"
                    "C3,c3@example.com,complained,2026-01-04\n")
    holds = _holds(_customers(first_name=["Ana"] * 5), load_suppression(path))
    assert holds == ["suppressed:unsubscribed", None, "suppressed:bounced", "suppressed:complained", None]


def test_precedence_suppressed_then_consent_then_address_then_merge_values(tmp_path):
    path = tmp_path / "suppression.csv"
    path.write_text("customer_id,reason,date\nC0,unsubscribed,2026-01-02\n")
    frame = _customers(first_name=["<b>x</b>"] * 4, email=["", "", "", "bad"])
    consent = np.array([False, False, True, True])
    assert _holds(frame, load_suppression(path), consent=consent) == [
        "suppressed:unsubscribed", "no_consent", "no_email", "invalid_email"]


@pytest.mark.parametrize("content, column, rule", [
    ("customer_id,reason\nC1,unsubscribed\n", "date", "required column missing"),
    ("customer_id,reason,date,notes\nC1,unsubscribed,2026-01-01,x\n", "notes", "unknown column"),
    ("reason,date\nunsubscribed,2026-01-01\n", None, "needs a customer_id or an email"),
    ("customer_id,email,reason,date\n,,unsubscribed,2026-01-01\n", "customer_id", "needs a customer_id or an email"),
    ("customer_id,reason,date\nC1,Un Subscribed,2026-01-01\n", "reason", "lower-case word"),
    ("customer_id,reason,date\nC1,unsubscribed,01/02/2026\n", "date", "ISO 8601 date"),
])
def test_a_bad_suppression_file_names_file_column_and_rule(tmp_path, content, column, rule):
    path = tmp_path / "suppression.csv"
    path.write_text(content)
    with pytest.raises(DataContractError) as raised:
        load_suppression(path)
    assert raised.value.column == column and rule in str(raised.value) and str(path) in str(raised.value)


def test_a_missing_suppression_file_is_an_error(tmp_path):
    with pytest.raises(DataContractError, match="must exist"):
        load_suppression(tmp_path / "absent.csv")


def test_consent_values_read_as_yes_no_or_empty_and_others_are_errors():
    ids = pd.Series(["C1", "C2", "C3", "C4", "C5"])
    given = consent_given(pd.Series(["yes", "No", "", None, "TRUE"]), source="customers.csv", column="email_opt_in", customer_ids=ids)
    assert given.tolist() == [True, False, False, False, True]
    with pytest.raises(DataContractError, match="email_opt_in") as raised:
        consent_given(pd.Series(["yes", "maybe"]), source="customers.csv", column="email_opt_in", customer_ids=ids[:2])
    assert "C2" in str(raised.value) and "maybe" in str(raised.value)


@pytest.mark.e2e
def test_held_customers_are_never_sent_counted_and_left_out_of_the_analysis(campaign_folder, capsys):
    customers = pd.read_csv(campaign_folder.data / "customers.csv", dtype=str, keep_default_na=False)
    customers["email_opt_in"] = "yes"
    customers.loc[customers.index[10:20], "email_opt_in"] = "no"
    customers.loc[customers.index[20:45], "email"] = ""  # 25 customers without an address
    customers.loc[customers.index[45], "first_name"] = '<a href="http://evil.example">Ana</a>'
    customers.loc[customers.index[46], "first_name"] = "Ana\r\nBcc: list@example.com"
    customers.to_csv(campaign_folder.data / "customers.csv", index=False)
    suppression = pd.read_csv(campaign_folder.data / "suppression.csv", dtype=str, keep_default_na=False)
    campaign_folder.edit_campaign(audience__consent_column="email_opt_in")

    assert cli.main(["run", "--campaign", str(campaign_folder.campaign), "--wave", TEST_WAVE]) == cli.EXIT_OK
    out = capsys.readouterr().out
    with DuckDBWarehouse(campaign_folder.warehouse).reader() as connection:
        holds = dict(connection.execute(
            "SELECT hold_reason, count(*) FROM personalization.assignments WHERE NOT sent GROUP BY ALL").fetchall())
        sent = connection.execute("SELECT count(*) FROM personalization.assignments WHERE sent").fetchone()[0]
        analysed = connection.execute("SELECT sum(n) FROM personalization.experiment_results "
                                      "WHERE scope = 'overall' AND metric = 'open_rate'").fetchone()[0]
    suppressed = sum(n for reason, n in holds.items() if reason.startswith("suppressed:"))
    assert holds["no_consent"] == 10 and holds["no_email"] == 25 and holds["unsafe_merge_value:first_name"] == 2
    assert suppressed == len(suppression)  # nobody on the list is also one of the edited rows
    assert f"no_email {holds['no_email']}" in out and "no_consent 10" in out and "held out (not sent, not analysed)" in out
    assert analysed == sent
    emails = duckdb.execute("SELECT * FROM read_parquet(?)",
                            [str(campaign_folder.home / "exports" / TEST_WAVE / "personalized_messages.parquet")]).df()
    assert len(emails) == sent and not emails["email"].eq("").any()
    assert not emails["body"].str.contains("evil.example|Bcc:", regex=True).any()
    listed = set(suppression["customer_id"]) - {""}
    assert not emails["customer_id"].isin(listed).any()
    assert not emails["email"].str.lower().isin(set(suppression["email"].str.lower()) - {""}).any()
    report = (campaign_folder.home / "reports" / TEST_WAVE / "report.html").read_text()
    assert "no_consent" in report and "suppressed:unsubscribed" in report


@pytest.mark.e2e
def test_a_bad_suppression_file_exits_64_before_anything_is_written(campaign_folder, capsys):
    (campaign_folder.data / "suppression.csv").write_text("customer_id,reason,date\nC0000001,unsubscribed,yesterday\n")
    assert cli.main(["run", "--campaign", str(campaign_folder.campaign), "--wave", TEST_WAVE]) == 64
    err = capsys.readouterr().err
    assert "suppression.csv" in err and "date" in err and "Traceback" not in err


def test_suppression_dates_may_be_iso_8601_timestamps(tmp_path):
    path = tmp_path / "suppression.csv"
    path.write_text("customer_id,reason,date\nC1,unsubscribed,2025-11-01T00:00:00Z\nC2,bounced,2025-11-02\n")
    suppression = load_suppression(path)
    assert suppression.by_customer_id.to_dict() == {"C1": "unsubscribed", "C2": "bounced"}
