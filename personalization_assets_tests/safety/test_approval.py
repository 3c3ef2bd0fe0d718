"""Human approval of every distinct message before it can be sent (issue 12, item 2)."""

import duckdb
import pandas as pd
import pytest

from personalization_assets.audit.trail import AuditLog, explain
from personalization_assets.campaign.errors import AuditTrailError
from personalization_assets.cli import commands as cli
from personalization_assets.safety.approval import (
    APPROVED,
    BLOCKED,
    PENDING,
    REJECTED,
    content_hash,
    content_hashes,
    effective_decisions,
    reviews_from,
    text_diff,
)
from personalization_assets.warehouse import DuckDBWarehouse
from personalization_assets_tests.conftest import TEST_WAVE

TEXT = {"subject": "Spring is here", "body": "Hi {{first_name}}, tents are in.", "cta": "Shop now", "citations": "DOC-001"}


def test_the_hash_binds_every_field_of_the_text():
    base = content_hash(**TEXT)
    assert base == content_hash(**TEXT)
    for field in TEXT:
        assert content_hash(**{**TEXT, field: TEXT[field] + " "}) != base, field


def _frames(decisions=("approved", "approved", "blocked")):
    variants = pd.DataFrame({"segment": ["s1", "s1", "s2"], "variant_id": ["s1:a", "control", "s2:a"],
                             **{field: [value] * 3 for field, value in TEXT.items()}})
    variants.loc[1, "body"] = "Hi {{first_name}}, the control text."
    verdicts = pd.DataFrame({"segment": variants["segment"], "variant_id": variants["variant_id"], "arm": ["a", "control", "a"],
                             "decision": list(decisions), "content_hash": content_hashes(variants)})
    return variants, verdicts


def test_a_verdict_covers_only_the_text_it_judged():
    variants, verdicts = _frames()
    edited = variants.assign(body=variants["body"] + " Unscreened sentence.")  # generated again, not screened again
    assert effective_decisions(verdicts, edited, {}, "screen")["decision"].tolist() == [BLOCKED, BLOCKED, BLOCKED]
    unrecorded = verdicts.drop(columns="content_hash")  # a verdict stored by an earlier version records no text
    assert effective_decisions(unrecorded, variants, {}, "screen")["decision"].tolist() == [BLOCKED, BLOCKED, BLOCKED]


def test_a_rejection_holds_in_screen_mode_too():
    variants, verdicts = _frames()
    digest = verdicts["content_hash"].iloc[0]
    reviews = reviews_from([_review("s1:a", digest, REJECTED, 1)])
    assert effective_decisions(verdicts, variants, reviews, "screen")["decision"].tolist() == [REJECTED, APPROVED, BLOCKED]


def _review(variant_id, digest, decision, seq):
    return {"kind": "approval", "variant_id": variant_id, "content_hash": digest, "decision": decision, "by": "Dana", "seq": seq}


def test_screen_mode_sends_what_the_screen_approved():
    variants, verdicts = _frames()
    decisions = effective_decisions(verdicts, variants, {}, "screen")
    assert decisions["decision"].tolist() == [APPROVED, APPROVED, BLOCKED]
    assert decisions["approved_by"].tolist() == ["automated screen", "automated screen", ""]


def test_reviewer_mode_needs_an_approval_of_the_exact_text_and_the_latest_review_wins():
    variants, verdicts = _frames()
    hashes = effective_decisions(verdicts, variants, {}, "reviewer")["content_hash"].tolist()
    assert effective_decisions(verdicts, variants, {}, "reviewer")["decision"].tolist() == [PENDING, PENDING, BLOCKED]
    records = [_review("s1:a", hashes[0], APPROVED, 1), _review("control", hashes[1], APPROVED, 2),
               _review("control", hashes[1], REJECTED, 3), _review("s2:a", hashes[2], APPROVED, 4)]
    decisions = effective_decisions(verdicts, variants, reviews_from(records), "reviewer")
    # A reviewer cannot overrule the screen: s2:a stays blocked.
    assert decisions["decision"].tolist() == [APPROVED, REJECTED, BLOCKED]
    edited = variants.assign(body=variants["body"] + "!")  # any change to the text needs a new screen and a new approval
    rescreened = verdicts.assign(content_hash=content_hashes(edited))
    assert effective_decisions(rescreened, edited, reviews_from(records), "reviewer")["decision"].tolist() == [PENDING, PENDING, BLOCKED]


def test_the_diff_shows_what_changed_since_the_last_approval():
    diff = text_diff(TEXT, {**TEXT, "subject": "Spring is finally here"})
    assert "-subject: Spring is here" in diff and "+subject: Spring is finally here" in diff
    assert text_diff(TEXT, TEXT) == "(identical to the last approved version)"
    assert text_diff(None, TEXT) == "(no earlier approved version)"


def _reviewer_campaign(folder):
    folder.edit_campaign(approval__mode="reviewer")
    return ["--campaign", str(folder.campaign)]


@pytest.mark.e2e
def test_reviewer_mode_end_to_end(campaign_folder, capsys):
    """Nothing is assigned until every text is reviewed; approvals are audit records; a rejected
    text holds its customers out; a changed text is pending again, with a diff."""
    campaign = _reviewer_campaign(campaign_folder)
    assert cli.main(["run", *campaign, "--wave", TEST_WAVE]) == cli.EXIT_AWAITING_APPROVAL
    captured = capsys.readouterr()
    assert "await a reviewer" in captured.err and "- `control`" in captured.err
    with DuckDBWarehouse(campaign_folder.warehouse).reader() as connection:
        tables = {row[0] for row in connection.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert "assignments" not in tables  # nobody was assigned

    assert cli.main(["review", *campaign]) == cli.EXIT_OK
    review = capsys.readouterr().out
    assert review.count("== ") == 19 and "cites: DOC-" in review and "(no earlier approved version)" in review
    assert cli.main(["approve", "at_risk:urgent", "--reject", "--reason", "too pushy", "--by", "Dana", *campaign]) == cli.EXIT_OK
    assert cli.main(["approve", "--all-pending", "--by", "Dana", *campaign]) == cli.EXIT_OK
    capsys.readouterr()
    assert cli.main(["run", *campaign, "--wave", TEST_WAVE]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "reviewer_approval: passed" in out and "variant_rejected" in out
    with DuckDBWarehouse(campaign_folder.warehouse).reader() as connection:
        rejected = connection.execute("SELECT count(*), count(*) FILTER (WHERE sent) FROM personalization.assignments "
                                      "WHERE variant_id = 'at_risk:urgent'").fetchone()
    assert rejected[0] > 0 and rejected[1] == 0
    log = AuditLog(campaign_folder.home / "audit")
    approvals = [r for r in log.records() if r["kind"] == "approval"]
    assert len(approvals) == 19 and {r["by"] for r in approvals} == {"Dana"}
    assert log.verify()[1] is None and log.unapproved_sends().empty
    sent_customer = duckdb.connect(str(campaign_folder.warehouse), read_only=True).execute(
        "SELECT customer_id FROM personalization.assignments WHERE sent LIMIT 1").fetchone()[0]
    assert "approval: approved by Dana" in explain(log, sent_customer, TEST_WAVE)
    assert "approved by" in (campaign_folder.home / "reports" / TEST_WAVE / "report.html").read_text()

    # Rename the company: every text changes, so every variant needs a new approval, shown with a diff.
    campaign_folder.edit_campaign(company__name="Northwind Outdoor Co")
    assert cli.main(["run", *campaign, "--wave", TEST_WAVE]) == cli.EXIT_AWAITING_APPROVAL
    assert "- `control`" in capsys.readouterr().err
    assert cli.main(["review", *campaign]) == cli.EXIT_OK
    review = capsys.readouterr().out
    assert review.count("== ") == 19 and "+" in review and "Northwind Outdoor Co" in review
    assert "(no earlier approved version)" in review  # the rejected text has no approved version to diff against


@pytest.mark.e2e
def test_a_blocked_variant_cannot_be_approved_by_a_person(materialized_copy, capsys, monkeypatch):
    monkeypatch.setenv("CPO_HOME", str(materialized_copy.home))
    with duckdb.connect(str(materialized_copy.warehouse)) as connection:
        connection.execute("UPDATE personalization.safety_verdicts SET decision = 'blocked' WHERE variant_id = 'at_risk:urgent'")
    code = cli.main(["approve", "at_risk:urgent", "--by", "Dana", "--campaign", str(materialized_copy.campaign)])
    assert code == cli.EXIT_USAGE and "cannot overrule" in capsys.readouterr().err
    assert cli.main(["approve", "nope:urgent", "--by", "Dana", "--campaign", str(materialized_copy.campaign)]) == cli.EXIT_USAGE


def test_an_approval_forged_into_the_chain_is_not_trusted(tmp_path):
    log = AuditLog(tmp_path / "audit")
    log.append([{"kind": "verdict", "variant_id": "s:a", "decision": "approved"}])
    with open(log.chain_path, "a") as handle:  # no sequence, no hash: written by hand
        handle.write('{"kind":"approval","variant_id":"s:a","content_hash":"H","decision":"approved","by":"forged"}\n')
    with pytest.raises(AuditTrailError, match="approvals cannot be trusted"):
        log.verified_records()
