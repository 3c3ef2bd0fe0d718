"""The audit trail binds what was sent (issue 12, item 6): every tampering below is found by
`cpo audit verify`, a torn tail names its file and is repaired, and with CPO_AUDIT_KEY a chain
recomputed without the key is found too."""

import json
import shutil

import dagster as dg
import duckdb
import pytest

from personalization_assets.audit.trail import AuditLog, record_hash, record_hmac
from personalization_assets.cli import commands as cli
from personalization_assets_tests.conftest import TEST_WAVE
from personalization_assets_tests.defs.pipeline import materialize_wave

SCHEMA = "personalization"
pytestmark = pytest.mark.e2e  # every test here works on a materialized campaign


def _verify(capsys) -> tuple[int, str]:
    code = cli.main(["audit", "verify"])
    return code, capsys.readouterr().out


def _chain(folder):
    return folder.home / "audit" / "chain.jsonl"


def _lines(folder) -> list[str]:
    return _chain(folder).read_text().splitlines()


def _rewrite_parquet(path, sql: str) -> None:
    """Rewrite a Parquet file through a DuckDB query over it (`t`)."""
    with duckdb.connect() as connection:
        connection.execute(f"CREATE TABLE t AS SELECT * FROM read_parquet('{path}')")
        connection.execute(sql)
        connection.execute(f"COPY t TO '{path}' (FORMAT parquet)")


def _export(folder):
    return folder.home / "exports" / TEST_WAVE / "personalized_messages.parquet"


def _warehouse(folder, sql: str) -> None:
    with duckdb.connect(str(folder.warehouse)) as connection:
        connection.execute(sql)


def _sealed(folder, kind: str):
    return folder.home / "audit" / next(json.loads(line)["file"] for line in _lines(folder) if json.loads(line)["kind"] == kind)


def _drop_records(folder, count: int) -> None:
    _chain(folder).write_text("\n".join(_lines(folder)[:-count]) + "\n")


def _record_index(folder, kind: str) -> int:
    return next(i for i, line in enumerate(_lines(folder)) if json.loads(line)["kind"] == kind)


def _edit_record(folder, index: int, change) -> None:
    lines = _lines(folder)
    record = json.loads(lines[index])
    change(record)
    lines[index] = json.dumps(record, sort_keys=True, separators=(",", ":"))
    _chain(folder).write_text("\n".join(lines) + "\n")


def _swap_records(folder) -> None:
    lines = _lines(folder)
    lines[1], lines[2] = lines[2], lines[1]
    _chain(folder).write_text("\n".join(lines) + "\n")


def _truncate_before_wave(folder) -> None:
    _chain(folder).write_text("\n".join(_lines(folder)[:_record_index(folder, "send_decisions")]) + "\n")


TAMPERINGS = {
    "chain deleted": lambda f: _chain(f).unlink(),
    "chain emptied": lambda f: _chain(f).write_text(""),
    "audit folder removed": lambda f: shutil.rmtree(f.home / "audit"),
    "last record (the emails' seal) deleted": lambda f: _drop_records(f, 1),
    "both seals of the wave deleted": lambda f: _drop_records(f, 2),
    "chain cut back to before the wave": _truncate_before_wave,
    "an email body edited in the export": lambda f: _rewrite_parquet(
        _export(f), "UPDATE t SET body = replace(body, 'Hi ', 'Hi friend ') WHERE rowid = 3"),
    "an address edited in the export": lambda f: _rewrite_parquet(_export(f), "UPDATE t SET email = 'x@evil.example' WHERE rowid = 0"),
    "an email removed from the export": lambda f: _rewrite_parquet(_export(f), "DELETE FROM t WHERE rowid = 5"),
    "an arm edited in the warehouse": lambda f: _warehouse(
        f, f"UPDATE {SCHEMA}.assignments SET arm = 'control' WHERE customer_id = (SELECT min(customer_id) FROM {SCHEMA}.assignments WHERE arm <> 'control')"),
    "a held customer marked sent in the warehouse": lambda f: _warehouse(
        f, f"UPDATE {SCHEMA}.assignments SET sent = true, hold_reason = NULL WHERE customer_id = (SELECT min(customer_id) FROM {SCHEMA}.assignments WHERE NOT sent)"),
    "an assignment deleted from the warehouse": lambda f: _warehouse(
        f, f"DELETE FROM {SCHEMA}.assignments WHERE customer_id = (SELECT max(customer_id) FROM {SCHEMA}.assignments)"),
    "an approved variant's body edited in the warehouse": lambda f: _warehouse(
        f, f"UPDATE {SCHEMA}.message_variants SET body = body || ' Visit our partner.' WHERE variant_id = 'control'"),
    "a decision row edited in the sealed file": lambda f: _rewrite_parquet(
        _sealed(f, "send_decisions"), "UPDATE t SET arm = 'control' WHERE row = 1"),
    "the sealed decision file deleted": lambda f: _sealed(f, "send_decisions").unlink(),
    "the sealed email file deleted": lambda f: _sealed(f, "rendered_emails").unlink(),
    "a verdict edited in the chain": lambda f: _edit_record(f, _record_index(f, "verdict"), lambda r: r.update(decision="approved!")),
    "two records swapped": _swap_records,
    "a record's hash recomputed after an edit": lambda f: _edit_record(
        f, _record_index(f, "verdict"), lambda r: r.update(reasons="edited", hash=record_hash({**r, "reasons": "edited"}))),
}


def test_the_untouched_trail_verifies(materialized_copy, capsys):
    code, out = _verify(capsys)
    assert code == cli.EXIT_OK and "equal what was sealed" in out


@pytest.mark.parametrize("tampering", list(TAMPERINGS))
def test_every_tampering_is_detected(materialized_copy, capsys, tampering):
    TAMPERINGS[tampering](materialized_copy)
    code, out = _verify(capsys)
    assert code == cli.EXIT_AUDIT_BROKEN, (tampering, out)
    assert "intact" not in out.splitlines()[0] or "does NOT match" in out


def test_a_torn_tail_names_the_file_and_is_repaired(materialized_copy, capsys):
    folder = materialized_copy
    with open(_chain(folder), "a") as handle:
        handle.write('{"kind":"verdict","run_id":"x","seq":')  # the disk filled up mid-append
    code, out = _verify(capsys)
    assert code == cli.EXIT_AUDIT_BROKEN and "torn" in out and "chain.jsonl" in out and "cpo audit repair" in out
    # The next run's first append refuses with the same instructions (nothing sealed on a torn chain).
    result = materialize_wave(folder.definitions(), dg.DagsterInstance.ephemeral(), TEST_WAVE)
    assert not result.success
    assert any("cpo audit repair" in (e.step_failure_data.error.cause or e.step_failure_data.error).message
               for e in result.all_events if e.is_step_failure)
    assert cli.main(["audit", "repair"]) == cli.EXIT_OK
    assert "moved" in capsys.readouterr().out and list((folder.home / "audit").glob("chain.jsonl.torn-*"))
    assert materialize_wave(folder.definitions(), dg.DagsterInstance.ephemeral(), TEST_WAVE).success
    assert _verify(capsys)[0] == cli.EXIT_OK


def test_with_a_key_a_chain_recomputed_without_it_is_detected(campaign_folder, capsys, monkeypatch):
    """Without a key, someone who rewrites a record and recomputes every hash after it leaves a
    chain that verifies (docs/quality-and-audit.md says so); with CPO_AUDIT_KEY, it does not."""
    monkeypatch.setenv("CPO_AUDIT_KEY", "test-audit-key-not-a-secret")
    assert cli.main(["run", "--campaign", str(campaign_folder.campaign), "--wave", TEST_WAVE]) == cli.EXIT_OK
    capsys.readouterr()
    code, out = _verify(capsys)
    assert code == cli.EXIT_OK and "HMAC-signed" in out
    log = AuditLog(campaign_folder.home / "audit")
    records = log.records()
    assert all("hmac" in r for r in records)
    index = next(i for i, r in enumerate(records) if r["kind"] == "verdict")
    records[index]["reasons"] = "rewritten"
    previous = records[index - 1]["hash"] if index else "0" * 64
    for record in records[index:]:  # the forger recomputes every hash, but cannot sign
        record.pop("hmac")
        record["prev_hash"] = previous
        record["hash"] = record_hash(record)
        previous = record["hash"]
    log.chain_path.write_text("".join(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n" for r in records))
    code, out = _verify(capsys)
    assert code == cli.EXIT_AUDIT_BROKEN and "not signed" in out
    for record in records[index:]:  # signing with a guessed key does not help either
        record["hmac"] = record_hmac(record, b"guess")
    log.chain_path.write_text("".join(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n" for r in records))
    code, out = _verify(capsys)
    assert code == cli.EXIT_AUDIT_BROKEN and "HMAC does not match" in out
    monkeypatch.delenv("CPO_AUDIT_KEY")
    assert AuditLog(campaign_folder.home / "audit").verify()[1] is None  # without the key: not detectable, as documented
    assert "test-audit-key-not-a-secret" not in log.chain_path.read_text()  # the key itself is never stored
