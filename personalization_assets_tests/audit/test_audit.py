"""The audit trail: intact chains verify, any tampering is found, every send traces to a verdict."""

import json

import duckdb
import pandas as pd
import pytest

from personalization_assets.audit.trail import (
    AuditLog,
    explain,
    record_hash,
    verdict_records,
)
from personalization_assets.cli import commands as cli
from personalization_assets.experiment.assignment import build_assignments

WEIGHTS = {"control": 0.5, "friendly": 0.5}


def verdicts(friendly_decision: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "segment": ["s1", "s1"],
            "variant_id": ["control", "s1:friendly"],
            "arm": ["control", "friendly"],
            "decision": ["approved", friendly_decision],
            "hate": [0, 0],
            "self_harm": [0, 0],
            "sexual": [0, 0],
            "violence": [0, 6 if friendly_decision == "blocked" else 0],
            "blocklist_hits": ["", ""],
            "rule_hits": ["", ""],
            "reasons": ["", "Violence severity 6 >= 4" if friendly_decision == "blocked" else ""],
            "policy_version": ["p1", "p1"],
            "backend": ["local-safety", "local-safety"],
        }
    )


def decisions(verdict_frame: pd.DataFrame, n: int = 200) -> pd.DataFrame:
    customers = pd.DataFrame({"customer_id": [f"C{i:05d}" for i in range(n)], "segment": "s1"})
    variants = verdict_frame[["segment", "arm", "variant_id"]]
    return build_assignments(customers.assign(contact_hold=""), variants, verdict_frame, experiment_id="e", weights=WEIGHTS, wave="2026-11-16")


@pytest.fixture
def trail(tmp_path) -> AuditLog:
    log = AuditLog(tmp_path / "audit")
    frame = verdicts("blocked")
    log.append(verdict_records(frame, "run-content", approval_mode="screen"))
    log.append_send_decisions("run-wave", "2026-11-16", decisions(frame))
    return log


def test_an_untouched_trail_verifies(trail):
    checked, problem = trail.verify()
    assert problem is None
    assert checked == 3


def test_explain_says_why_a_customer_was_held_out(trail):
    frame = decisions(verdicts("blocked"))
    held = frame.loc[~frame["sent"], "customer_id"].iloc[0]
    sent = frame.loc[frame["sent"], "customer_id"].iloc[0]
    held_text = explain(trail, held)
    assert "NOT SENT (variant_blocked)" in held_text and "verdict: blocked" in held_text and "Violence severity 6" in held_text
    assert "verdict: approved" in explain(trail, sent)
    assert "no recorded send decision" in explain(trail, "nobody")


def test_a_run_that_stopped_before_rendering_is_never_recorded_as_sent(trail, tmp_path):
    frame = decisions(verdicts("blocked"))
    sent = frame.loc[frame["sent"], "customer_id"].iloc[0]
    assert "NOT SENT (decided to send, but this run stopped before its emails were rendered)" in explain(trail, sent)
    export = tmp_path / "emails.parquet"
    emails = frame.loc[frame["sent"], ["customer_id", "variant_id"]].assign(email="a@example.com", subject="s", body="b")
    with duckdb.connect() as connection:
        connection.register("emails", emails)
        connection.execute(f"COPY emails TO '{export}' (FORMAT parquet)")
    sealed = trail.append_rendered_emails("run-wave", "2026-11-16", export)
    assert sealed["rows"] == len(emails) and trail.verify()[1] is None
    assert ": SENT" in explain(trail, sent)


def rewrite_line(log: AuditLog, index: int, change) -> None:
    lines = log.chain_path.read_text().splitlines()
    record = json.loads(lines[index])
    change(record)
    lines[index] = json.dumps(record, sort_keys=True, separators=(",", ":"))
    log.chain_path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("index", [0, 1, 2])
def test_changing_any_record_is_detected(trail, index):
    rewrite_line(trail, index, lambda r: r.update(decision="approved", rows=1, policy_version="forged"))
    _, problem = trail.verify()
    assert problem is not None and problem.line == index + 1
    assert "changed" in problem.detail


def test_a_forger_who_rehashes_a_record_is_caught_by_the_next_one(trail):
    def forge(record):
        record["decision"] = "approved"
        record["hash"] = record_hash(record)

    rewrite_line(trail, 1, forge)
    _, problem = trail.verify()
    assert problem.line == 3 and "previous-record hash" in problem.detail


def test_removing_or_inserting_a_record_is_detected(trail):
    lines = trail.chain_path.read_text().splitlines()
    trail.chain_path.write_text("\n".join([lines[0], lines[2]]) + "\n")
    _, problem = trail.verify()
    assert problem.line == 2 and "removed or inserted" in problem.detail


def decision_file(log: AuditLog):
    return next((log.directory / "decisions").rglob("*.parquet"))


@pytest.mark.parametrize(
    "tamper, expected",
    [
        ("UPDATE rows SET sent = true WHERE NOT sent AND row = (SELECT min(row) FROM rows WHERE NOT sent)", "was changed"),
        # A forger who also recomputes the row's own hash is caught by the next row and the root hash.
        (
            "UPDATE rows SET sent = true, record_hash = sha256('forged') WHERE row = 5",
            "was changed",
        ),
        ("DELETE FROM rows WHERE row = (SELECT max(row) FROM rows)", "rows"),
    ],
)
def test_changing_any_decision_row_is_detected(trail, tamper, expected):
    path = decision_file(trail)
    with duckdb.connect() as connection:
        connection.execute(f"CREATE TABLE rows AS SELECT * FROM read_parquet('{path}')")
        connection.execute(tamper)
        connection.execute(f"COPY (SELECT * FROM rows ORDER BY row) TO '{path}' (FORMAT parquet)")
    _, problem = trail.verify()
    assert problem is not None and problem.kind == "send_decisions" and expected in problem.detail


def test_a_missing_decision_file_is_detected(trail):
    decision_file(trail).unlink()
    _, problem = trail.verify()
    assert problem is not None and "missing" in problem.detail


def test_sends_trace_to_approved_verdicts(tmp_path):
    log = AuditLog(tmp_path / "audit")
    frame = verdicts("approved")
    log.append(verdict_records(frame, "run-content", approval_mode="screen"))
    log.append_send_decisions("run-wave", "2026-11-16", decisions(frame))
    assert log.unapproved_sends().empty
    # A decision that sends a variant whose latest verdict blocked it is found.
    blocked = verdicts("blocked")
    log.append(verdict_records(blocked, "run-content-2", approval_mode="screen"))
    forged = decisions(frame).assign(wave="2026-11-23")  # built as if the variant were approved
    log.append_send_decisions("run-wave-2", "2026-11-23", forged)
    unapproved = log.unapproved_sends()
    assert len(unapproved) == int((forged["sent"] & (forged["arm"] == "friendly")).sum()) > 0
    assert set(unapproved["variant_id"]) == {"s1:friendly"}


def test_cpo_audit_commands(trail, capsys, tmp_path):
    assert cli.main(["audit", "--audit-dir", str(trail.directory), "verify"]) == cli.EXIT_OK
    assert "3 records verified" in capsys.readouterr().out
    assert cli.main(["audit", "--audit-dir", str(trail.directory), "explain", "C00000", "--wave", "2026-11-18"]) == cli.EXIT_OK
    assert "customer C00000" in capsys.readouterr().out
    rewrite_line(trail, 0, lambda r: r.update(reasons="nothing to see"))
    assert cli.main(["audit", "--audit-dir", str(trail.directory), "verify"]) == cli.EXIT_AUDIT_BROKEN
    assert "BROKEN at record 1" in capsys.readouterr().out


def test_cpo_audit_verify_fails_on_a_send_of_an_unapproved_variant(tmp_path, capsys):
    log = AuditLog(tmp_path / "audit")
    approved = verdicts("approved")
    log.append(verdict_records(approved, "run-content", approval_mode="screen"))
    log.append(verdict_records(verdicts("blocked"), "run-content-2", approval_mode="screen"))
    # A wave that sent the variant after its latest verdict blocked it: the chain itself is intact.
    log.append_send_decisions("run-wave", "2026-11-23", decisions(approved).assign(wave="2026-11-23"))
    assert log.verify()[1] is None
    assert cli.main(["audit", "--audit-dir", str(log.directory), "verify"]) == cli.EXIT_AUDIT_BROKEN
    out = capsys.readouterr().out
    assert "audit trail intact, but" in out and "(s1:friendly)" in out
