"""The audit trail: an append-only, tamper-evident log of every variant, verdict and send decision.

Layout under the audit folder (`$CPO_HOME/audit` by default):

- `chain.jsonl`: one JSON record per line (variants, verdicts, and one `send_decisions` record per
  run and wave), each carrying the hash of the previous record and its own hash over every field;
- `decisions/<wave>/<run id>.parquet`: one row per customer send decision, each with its own
  record hash and the previous row's hash. The chain's `send_decisions` record carries the row
  count and the root hash over all row hashes, so changing, adding, removing or reordering any
  customer's decision breaks the chain.

Per-customer hashes are computed by DuckDB in one vectorized statement, so a million decisions cost
well under a second; only the few hundred chain records are hashed one by one.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import hmac
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from personalization_assets.campaign.errors import AuditTrailError
from personalization_assets.experiment.assignment import HOLD_NO_EMAIL
from personalization_assets.safety.approval import (
    MODE_REVIEWER,
    content_hashes,
    reviews_from,
)
from personalization_assets.warehouse import Warehouse, WarehouseBusy, as_warehouse

GENESIS_HASH = "0" * 64
CHAIN_FILE = "chain.jsonl"
DECISION_FIELDS = ("wave", "customer_id", "segment", "arm", "variant_id", "sent", "hold_reason")
# A wave's sends: its randomized test, and (with rollout.test_share) the rollout to everyone else.
# Each stage has its own warehouse table and export file, sealed by records of its stage; a record
# written before stages existed is the test's.
STAGE_TEST, STAGE_ROLLOUT = "test", "rollout"
STAGE_TABLES = {STAGE_TEST: "assignments", STAGE_ROLLOUT: "rollout_assignments"}


def stage_of(record: Mapping[str, object]) -> str:
    return str(record.get("stage") or STAGE_TEST)


def _stage_suffix(stage: str) -> str:
    return "" if stage == STAGE_TEST else f".{stage}"
# What a rendered email's hash covers: the address it goes to and every byte of its text.
RENDERED_FIELDS = ("customer_id", "email", "subject", "body")
# With this set, every record carries an HMAC-SHA256 under the key: a chain rewritten and rehashed
# by someone without the key no longer verifies. The key is read here only; never stored or printed.
AUDIT_KEY_ENV = "CPO_AUDIT_KEY"


def _audit_key() -> bytes | None:
    key = os.environ.get(AUDIT_KEY_ENV, "")
    return key.encode("utf-8") if key else None


def record_hmac(record: Mapping[str, object], key: bytes) -> str:
    """The HMAC-SHA256 under `key` of every field of a record except its own HMAC."""
    return hmac.new(key, _canonical({k: v for k, v in record.items() if k != "hmac"}), hashlib.sha256).hexdigest()


def _fsync(path: Path) -> None:
    """Flush a written file (and its folder's entry) to the disk: a record is durable once appended."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _canonical(record: Mapping[str, object]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), default=str).encode()


def record_hash(record: Mapping[str, object]) -> str:
    """The hash of every field of a record except its own hash."""
    return hashlib.sha256(_canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


def _rendered_hash_sql() -> str:
    """Per-email hash of an exported email, in DuckDB: each field length-prefixed, so no text can
    move bytes from one field into another."""
    parts = ", ".join(f"length(coalesce(CAST({f} AS VARCHAR), ''))::VARCHAR, ':', coalesce(CAST({f} AS VARCHAR), '')"
                      for f in RENDERED_FIELDS)
    return f"sha256(concat({parts}))"


def _decision_hash_sql(table: str) -> str:
    """Per-row hash of a decision row and the run it belongs to, in DuckDB, for all rows at once."""
    fields = ", ".join(f"coalesce(CAST({f} AS VARCHAR), '')" for f in ("run_id", *DECISION_FIELDS))
    return f"sha256(concat_ws('|', {fields}))"


@dataclass(frozen=True)
class Problem:
    """The first place the trail is broken."""

    line: int
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"record {self.line} ({self.kind}): {self.detail}"


class AuditLog:
    def __init__(self, directory: Path | str):
        self.directory = Path(directory)
        self.chain_path = self.directory / CHAIN_FILE

    # --- writing ---------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time, across processes (the multiprocess executor, a UI run and the CLI)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _tail(self) -> tuple[bytes, int]:
        """The chain's last line (without its newline) and the byte offset where it starts."""
        with open(self.chain_path, "rb") as handle:
            handle.seek(0, 2)
            position = end = handle.tell()
            # Read backwards until the start of the last line: the chain can be long.
            block = b""
            while position > 0 and block.rstrip(b"\n").count(b"\n") < 1:
                step = min(4096, position)
                position -= step
                handle.seek(position)
                block = handle.read(step) + block
        body = block[:-1] if block.endswith(b"\n") else block
        cut = body.rfind(b"\n")
        return body[cut + 1:], (position + cut + 1 if cut >= 0 else position) if end else 0

    def torn_tail(self) -> int | None:
        """Where a torn last record starts (an append cut short: no newline, or not JSON), or None."""
        if not self.chain_path.exists() or self.chain_path.stat().st_size == 0:
            return None
        last, start = self._tail()
        with open(self.chain_path, "rb") as handle:
            handle.seek(-1, 2)
            ends_with_newline = handle.read(1) == b"\n"
        try:
            json.loads(last)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return start
        return None if ends_with_newline else start

    def _torn_message(self, start: int) -> str:
        return (f"{self.chain_path}: the last record is torn (an append was cut short, e.g. by a full disk; "
                f"{self.chain_path.stat().st_size - start} bytes after the last complete record). The step that was "
                "appending failed, so nothing it decided was sent. Run `cpo audit repair` to move the torn bytes to "
                f"{self.chain_path.name}.torn-<time> beside it, then run again.")

    def repair(self) -> str:
        """Set a torn last record aside (kept in a side file) so appends can continue; say what was done."""
        with self._locked():
            start = self.torn_tail()
            if start is None:
                return f"{self.chain_path}: nothing to repair (the last record is complete)"
            aside = self.chain_path.with_name(f"{CHAIN_FILE}.torn-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S%fZ}")
            with open(self.chain_path, "r+b") as handle:
                handle.seek(start)
                aside.write_bytes(handle.read())
                handle.truncate(start)
                os.fsync(handle.fileno())
            _fsync(aside)
            return f"{self.chain_path}: moved {aside.stat().st_size} torn bytes to {aside}; the chain ends at its last complete record"

    def _head(self) -> tuple[int, str]:
        """Sequence number and hash of the last record; a torn last record is an error that says what to do."""
        if not self.chain_path.exists() or self.chain_path.stat().st_size == 0:
            return 0, GENESIS_HASH
        torn = self.torn_tail()
        if torn is not None:
            raise AuditTrailError(self._torn_message(torn))
        last = json.loads(self._tail()[0])
        return int(last["seq"]), str(last["hash"])

    def _append_locked(self, records: Iterable[Mapping[str, object]]) -> list[dict]:
        seq, previous = self._head()
        written = []
        timestamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")
        key = _audit_key()
        with open(self.chain_path, "a") as handle:
            for record in records:
                seq += 1
                full = {**record, "seq": seq, "timestamp": record.get("timestamp", timestamp), "prev_hash": previous}
                full["hash"] = record_hash(full)
                if key is not None:
                    full["hmac"] = record_hmac(full, key)
                handle.write(_canonical(full).decode() + "\n")
                previous = full["hash"]
                written.append(full)
            handle.flush()
            os.fsync(handle.fileno())
        return written

    def append(self, records: Iterable[Mapping[str, object]]) -> list[dict]:
        """Append records (kind, run_id, ... any JSON fields); returns them as written."""
        with self._locked():
            return self._append_locked(records)

    def append_send_decisions(self, run_id: str, wave: str, decisions: pd.DataFrame, stage: str = STAGE_TEST) -> dict:
        """Write one row per customer decision and seal them with one chain record. `stage` tells
        a wave's randomized test from its rollout (`experiment/rollout.py`)."""
        with self._locked():
            _, previous = self._head()
            folder = self.directory / "decisions" / wave
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{run_id}{_stage_suffix(stage)}.parquet"
            with duckdb.connect() as connection:
                connection.register("frame", decisions[list(DECISION_FIELDS)])
                connection.execute(
                    f"""
                    CREATE TABLE rows AS
                    SELECT row_number() OVER (ORDER BY customer_id) AS row, '{run_id}' AS run_id, *
                    FROM frame;
                    CREATE TABLE hashed AS
                    SELECT *, {_decision_hash_sql('rows')} AS record_hash FROM rows;
                    """
                )
                connection.execute(
                    f"""
                    COPY (
                        SELECT *, coalesce(lag(record_hash) OVER (ORDER BY row), '{previous}') AS prev_hash
                        FROM hashed ORDER BY row
                    ) TO '{path.as_posix()}' (FORMAT parquet)
                    """
                )
                _fsync(path)
                root, count, sent = connection.execute(
                    "SELECT sha256(string_agg(record_hash, '' ORDER BY row)), count(*), count(*) FILTER (WHERE sent) FROM hashed"
                ).fetchone()
            return self._append_locked(
                [
                    {
                        "kind": "send_decisions",
                        "run_id": run_id,
                        "wave": wave,
                        "stage": stage,
                        "file": path.relative_to(self.directory).as_posix(),
                        "rows": int(count),
                        "sent": int(sent),
                        "held": int(count - sent),
                        "root_hash": root,
                        "first_prev_hash": previous,
                        # Its emails are sealed by a rendered_emails record when they are exported;
                        # seals written before this field existed were sent unsealed (legacy).
                        "emails_sealed": True,
                    }
                ]
            )[0]

    def append_rendered_emails(self, run_id: str, wave: str, export: Path, stage: str = STAGE_TEST) -> dict:
        """Seal the emails a run exported: one hash per customer's rendered email (address,
        subject, body), in `rendered/<wave>/<run id>.parquet`, and one chain record with the root
        hash. This record is what makes a run's send decisions "sent": a run that stopped before
        it is recorded as decided, never as sent."""
        with self._locked():
            self._head()  # a torn chain refuses before anything is written
            folder = self.directory / "rendered" / wave
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{run_id}{_stage_suffix(stage)}.parquet"
            with duckdb.connect() as connection:
                connection.execute(
                    f"""CREATE TABLE rendered AS SELECT row_number() OVER (ORDER BY customer_id) AS row, customer_id, variant_id,
                        {_rendered_hash_sql()} AS message_sha256 FROM read_parquet(?)""", [export.as_posix()])
                connection.execute(f"COPY (SELECT * FROM rendered ORDER BY row) TO '{path.as_posix()}' (FORMAT parquet)")
                _fsync(path)
                root, count = connection.execute(
                    "SELECT sha256(string_agg(message_sha256, '' ORDER BY row)), count(*) FROM rendered").fetchone()
            return self._append_locked([{
                "kind": "rendered_emails", "run_id": run_id, "wave": wave, "stage": stage, "file": path.relative_to(self.directory).as_posix(),
                "rows": int(count), "root_hash": root or "",
            }])[0]

    # --- reading ---------------------------------------------------------------------------

    def records(self) -> list[dict]:
        """Every record, oldest first; a torn last record is an error that names the file and the fix."""
        if not self.chain_path.exists():
            return []
        torn = self.torn_tail()
        if torn is not None:
            raise AuditTrailError(self._torn_message(torn))
        with open(self.chain_path) as handle:
            return [json.loads(line) for line in handle if line.strip()]

    def _record_problem(self, record: Mapping[str, object], line_number: int, previous: str, key: bytes | None,
                        signed_before: bool) -> Problem | None:
        """What is wrong with one chain record on its own and against the one before, if anything."""
        kind = str(record.get("kind", "?"))
        if record.get("seq") != line_number:
            return Problem(line_number, kind, f"sequence {record.get('seq')} where {line_number} was expected (a record was removed or inserted)")
        if record.get("prev_hash") != previous:
            return Problem(line_number, kind, "previous-record hash does not match (a record before it was changed, removed or inserted)")
        if record.get("hash") != record_hash({k: v for k, v in record.items() if k != "hmac"}):
            return Problem(line_number, kind, "record hash does not match its contents (the record was changed)")
        if key is not None:
            # Records from before the key was set carry no HMAC; from the first signed record on, every one must.
            if "hmac" not in record and signed_before:
                return Problem(line_number, kind, f"not signed, while {AUDIT_KEY_ENV} is set and earlier records are: every "
                               "record after the first signed one must carry an HMAC (the chain was rewritten without the key)")
            if "hmac" in record and not hmac.compare_digest(str(record["hmac"]), record_hmac(record, key)):
                return Problem(line_number, kind, "HMAC does not match (the record was changed, or the chain recomputed "
                               "without the key, or signed with another key)")
        return None

    def _checked_records(self, *, files: bool) -> Iterator[tuple[int, dict | None, Problem | None]]:
        """Each record with the first problem found up to it (then nothing more); with `files`,
        every sealed file is checked too."""
        key = _audit_key()
        torn = self.torn_tail()
        previous, signed, line_number = GENESIS_HASH, False, 0
        for line_number, line in enumerate(self.chain_path.read_bytes()[:torn].splitlines(), start=1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                yield line_number, None, Problem(line_number, "?", "not valid JSON")
                return
            problem = self._record_problem(record, line_number, previous, key, signed)
            kind = str(record.get("kind", "?"))
            if problem is None and files and kind in ("send_decisions", "rendered_emails"):
                detail = self._verify_decisions(record) if kind == "send_decisions" else self._verify_rendered(record)
                problem = Problem(line_number, kind, detail) if detail else None
            yield line_number, record, problem
            if problem is not None:
                return
            signed = signed or "hmac" in record
            previous = str(record["hash"])
        if torn is not None:
            yield line_number + 1, None, Problem(line_number + 1, "torn", self._torn_message(torn))
        elif key is not None and line_number and not signed:
            yield line_number, None, Problem(line_number, "unsigned", f"{AUDIT_KEY_ENV} is set but no record is signed (the "
                                             "chain was written without the key, or rewritten by someone without it)")

    def verify(self) -> tuple[int, Problem | None]:
        """Check every record, every sealed decision and email file, and (with CPO_AUDIT_KEY) every
        record's HMAC; returns (records checked, first problem)."""
        if not self.chain_path.exists():
            return 0, None
        checked = 0
        for line_number, _, problem in self._checked_records(files=True):
            checked = line_number
            if problem is not None:
                return line_number, problem
        return checked, None

    def verified_records(self) -> list[dict]:
        """Every record, after checking the chain (and with the key, the HMACs): what a decision
        that trusts the trail (a reviewer's approval) reads. A broken chain is an AuditTrailError."""
        if not self.chain_path.exists():
            return []
        records = []
        for _, record, problem in self._checked_records(files=False):
            if problem is not None:
                raise AuditTrailError(f"{self.chain_path}: the audit trail is broken at {problem}; approvals cannot be "
                                      "trusted from it (run `cpo audit verify`)")
            records.append(record)
        return records

    def _verify_rendered(self, record: Mapping[str, object]) -> str | None:
        path = self.directory / str(record["file"])
        if not path.is_file():
            return f"rendered-email file {record['file']} is missing"
        with duckdb.connect() as connection:
            root, count = connection.execute(
                "SELECT sha256(string_agg(message_sha256, '' ORDER BY row)), count(*) FROM read_parquet(?)", [path.as_posix()]).fetchone()
        if count != record["rows"] or (root or "") != record["root_hash"]:
            return f"rendered-email file {record['file']} was changed ({count} rows; the chain sealed {record['rows']})"
        return None

    def verify_against(self, warehouse: Warehouse | Path, exports: Path, export_files: Mapping[str, str]) -> list[str]:
        """What the chain cannot see alone: whether the warehouse's send decisions and variant
        texts, and the exported emails, are the ones it sealed. For each stage (`STAGE_TABLES`,
        `export_files`: its export file name), every wave its table holds must have sealed
        decisions equal to its rows, and every export must equal a run's sealed emails."""
        records = self.records()
        sealed: dict[tuple[str, str], list[dict]] = {}
        rendered: dict[tuple[str, str], list[dict]] = {}
        for record in records:
            if record.get("kind") == "send_decisions":
                sealed.setdefault((stage_of(record), str(record["wave"])), []).append(record)
            elif record.get("kind") == "rendered_emails":
                rendered.setdefault((stage_of(record), str(record["wave"])), []).append(record)
        problems: list[str] = []
        try:
            with as_warehouse(warehouse).reader([*STAGE_TABLES.values(), "message_variants"]) as connection:
                problems += self._check_warehouse(connection, sealed, records)
        except WarehouseBusy as exc:
            raise AuditTrailError(f"{exc} (to compare it with the trail: run `cpo audit verify` again then)") from None
        legacy = {key for key, seals in sealed.items() if not any(seal.get("emails_sealed") for seal in seals)}
        for stage, export_file in export_files.items():
            for path in sorted(exports.glob(f"*/{export_file}")) if exports.is_dir() else []:
                wave = path.parent.name
                if (stage, wave) in legacy and not rendered.get((stage, wave)):
                    continue  # exported before emails were sealed: nothing to compare it with
                problems += self._check_export(path, wave, rendered.get((stage, wave), []))
        return problems

    def _check_warehouse(self, connection, sealed: Mapping[tuple[str, str], list[dict]], records: list[dict]) -> list[str]:
        problems: list[str] = []
        tables = {row[0] for row in connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'personalization'").fetchall()}
        for stage, table in STAGE_TABLES.items():
            if table not in tables:
                continue
            for wave, rows in connection.execute(f"SELECT wave, count(*) FROM personalization.{table} GROUP BY wave ORDER BY wave").fetchall():
                problems += self._check_wave(connection, table, str(wave), int(rows), sealed.get((stage, str(wave)), []),
                                             records, "message_variants" in tables)
        return problems

    def _check_wave(self, connection, table: str, wave: str, rows: int, seals: list[dict], records: list[dict],
                    has_variants: bool) -> list[str]:
        if not seals:
            return [f"wave {wave}: the warehouse holds {rows} {table.replace('_', ' ')}, but the audit trail seals no decisions for it "
                    "(the chain, or its records for this wave, were deleted, emptied or replaced)"]
        matched = None
        for seal in reversed(seals):  # the latest first: a later run that did not store its rows leaves an earlier one
            root = connection.execute(
                f"SELECT sha256(string_agg(h, '' ORDER BY customer_id)) FROM (SELECT customer_id, {_decision_hash_sql('a')} AS h "
                f"FROM (SELECT ? AS run_id, * FROM personalization.{table} WHERE wave = ?) AS a)", [seal["run_id"], wave]).fetchone()[0]
            if root == seal["root_hash"] and rows == seal["rows"]:
                matched = seal
                break
        if matched is None:
            latest = seals[-1]
            path = (self.directory / str(latest["file"])).as_posix()
            fields = [f for f in DECISION_FIELDS if f not in ("wave", "customer_id")]
            differs = " OR ".join(f"s.{f} IS DISTINCT FROM w.{f}" for f in fields)
            changed = connection.execute(
                f"SELECT coalesce(s.customer_id, w.customer_id) FROM (SELECT * FROM read_parquet(?)) s FULL JOIN "
                f"(SELECT * FROM personalization.{table} WHERE wave = ?) w ON s.customer_id = w.customer_id "
                f"WHERE s.customer_id IS NULL OR w.customer_id IS NULL OR {differs} ORDER BY 1", [path, wave]).fetchall()
            examples = ", ".join(str(row[0]) for row in changed[:3])
            return [f"wave {wave}: the warehouse's {table.replace('_', ' ')} differ from every sealed decision file; against the latest "
                    f"(run {latest['run_id']}, record {latest['seq']}) {len(changed)} customers differ (e.g. {examples})"]
        if not has_variants:
            return []
        # The texts of the variants this wave sent, as the warehouse holds them, against the hashes recorded before the seal.
        variants = connection.execute(
            "SELECT DISTINCT v.segment, v.variant_id, v.subject, v.body, v.cta, v.citations FROM personalization.message_variants v "
            f"JOIN personalization.{table} a ON a.segment = v.segment AND a.variant_id = v.variant_id WHERE a.wave = ? AND a.sent",
            [wave]).df()
        recorded: dict[tuple[str, str], str] = {}
        for record in records:
            if record["seq"] >= matched["seq"]:
                break
            if record.get("kind") == "variant" and record.get("content_hash"):
                recorded[(str(record["segment"]), str(record["variant_id"]))] = str(record["content_hash"])
        problems = []
        for row, digest in zip(variants.itertuples(index=False), content_hashes(variants)):
            expected = recorded.get((row.segment, row.variant_id))
            if expected is not None and expected != digest:
                problems.append(f"wave {wave}: variant {row.variant_id} ({row.segment}) in the warehouse is not the text recorded "
                                f"before the wave was decided (sha256 {digest[:12]}…, recorded {expected[:12]}…)")
        return problems

    def _check_export(self, path: Path, wave: str, seals: list[dict]) -> list[str]:
        if not seals:
            return [f"wave {wave}: {path} holds emails that no run sealed (the audit records of its rendering were deleted, "
                    "or the file was put there by hand)"]
        with duckdb.connect() as connection:
            connection.execute(f"CREATE TABLE export AS SELECT customer_id, {_rendered_hash_sql()} AS h FROM read_parquet(?)",
                               [path.as_posix()])
            root, count = connection.execute("SELECT sha256(string_agg(h, '' ORDER BY customer_id)), count(*) FROM export").fetchone()
            if any((root or "") == seal["root_hash"] and count == seal["rows"] for seal in seals):
                return []
            latest = seals[-1]
            changed = connection.execute(
                "SELECT coalesce(s.customer_id, e.customer_id) FROM read_parquet(?) s FULL JOIN export e ON s.customer_id = e.customer_id "
                "WHERE s.message_sha256 IS DISTINCT FROM e.h ORDER BY 1", [(self.directory / str(latest["file"])).as_posix()]).fetchall()
        examples = ", ".join(str(row[0]) for row in changed[:3])
        return [f"wave {wave}: {path} differs from the emails sealed by run {latest['run_id']} (record {latest['seq']}): "
                f"{len(changed)} emails changed, added or removed (e.g. customers {examples})"]

    def _verify_decisions(self, record: Mapping[str, object]) -> str | None:
        path = self.directory / str(record["file"])
        if not path.is_file():
            return f"decision file {record['file']} is missing"
        with duckdb.connect() as connection:
            connection.execute(f"CREATE TABLE rows AS SELECT * FROM read_parquet('{path.as_posix()}')")
            bad = connection.execute(
                f"""
                SELECT row, customer_id,
                       record_hash <> {_decision_hash_sql('rows')} AS changed,
                       prev_hash <> coalesce(lag(record_hash) OVER (ORDER BY row), ?) AS relinked,
                       run_id <> ? AS moved
                FROM rows
                QUALIFY changed OR relinked OR moved
                ORDER BY row LIMIT 1
                """,
                [record["first_prev_hash"], record["run_id"]],
            ).fetchone()
            if bad:
                return f"decision row {bad[0]} (customer {bad[1]}) was changed"
            root, count = connection.execute("SELECT sha256(string_agg(record_hash, '' ORDER BY row)), count(*) FROM rows").fetchone()
        if count != record["rows"]:
            return f"decision file has {count} rows, the chain sealed {record['rows']}"
        if root != record["root_hash"]:
            return "decision rows were reordered, added or removed"
        return None

    def decisions_for(self, customer_id: str, wave: str | None = None) -> pd.DataFrame:
        """Every recorded decision for one customer, oldest first, with the chain record it belongs to."""
        sealed = pd.DataFrame([r for r in self.records() if r.get("kind") == "send_decisions"])
        if sealed.empty:
            return pd.DataFrame()
        sealed = sealed.assign(filename=[(self.directory / f).as_posix() for f in sealed["file"]],
                               stage=[stage_of(r) for r in sealed.to_dict("records")])
        query = "SELECT * FROM read_parquet(?, filename = true) WHERE customer_id = ?" + (" AND wave = ?" if wave else "")
        with duckdb.connect() as connection:
            rows = connection.execute(query, [sealed["filename"].tolist(), customer_id, *([wave] if wave else [])]).df()
        return rows.merge(sealed[["filename", "seq", "stage"]], on="filename").drop(columns="filename").sort_values("seq")

    def latest(self, kind: str, segment: str, variant_id: str, before_seq: int) -> dict | None:
        """The latest `kind` record ('variant' or 'verdict') on a variant before a chain position."""
        found = None
        for record in self.records():
            if record["seq"] >= before_seq:
                break
            if record.get("kind") == kind and record.get("segment") == segment and record.get("variant_id") == variant_id:
                found = record
        return found

    def unapproved_sends(self) -> pd.DataFrame:
        """Sent decisions whose variant's latest earlier verdict is missing or not 'approved'."""
        records = self.records()
        verdicts = pd.DataFrame([r for r in records if r.get("kind") == "verdict"],
                                columns=["seq", "segment", "variant_id", "decision", "approval_mode", "content_hash"])
        sealed = [r for r in records if r.get("kind") == "send_decisions"]
        if not sealed:
            return pd.DataFrame(columns=["customer_id", "segment", "variant_id", "decision"])
        with duckdb.connect() as connection:
            sent = connection.execute(
                "SELECT filename, run_id, wave, customer_id, segment, variant_id FROM read_parquet(?, filename = true) WHERE sent",
                [[(self.directory / r["file"]).as_posix() for r in sealed]],
            ).df()
        seqs = pd.DataFrame([{"filename": (self.directory / r["file"]).as_posix(), "seq": r["seq"]} for r in sealed])
        sent = sent.merge(seqs, on="filename").drop(columns="filename").sort_values("seq")
        traced = pd.merge_asof(
            sent, verdicts.sort_values("seq"), on="seq", by=["segment", "variant_id"], direction="backward"
        )
        # Under approval.mode reviewer, the latest review of the verdict's exact text before the
        # decision must be a person's approval too.
        reviews = pd.DataFrame([{"seq": r["seq"], "variant_id": r["variant_id"], "content_hash": r["content_hash"],
                                 "review": r["decision"]} for r in records if r.get("kind") == "approval"],
                               columns=["seq", "variant_id", "content_hash", "review"]).astype({"seq": "int64"})
        traced = pd.merge_asof(traced.assign(content_hash=traced["content_hash"].fillna("")).sort_values("seq"),
                               reviews.sort_values("seq"), on="seq", by=["variant_id", "content_hash"], direction="backward")
        unreviewed = traced["approval_mode"].eq("reviewer") & traced["review"].ne("approved")
        return traced[traced["decision"].ne("approved") | unreviewed]


def explain(log: AuditLog, customer_id: str, wave: str | None = None) -> str:
    """Why a customer got (or did not get) which message, from the audit trail alone."""
    decisions = log.decisions_for(customer_id, wave)
    if decisions.empty:
        scope = f" in wave {wave}" if wave else ""
        return f"no recorded send decision for customer {customer_id}{scope}"
    records = log.records()
    rendered = {(str(r["run_id"]), str(r["wave"]), stage_of(r)) for r in records if r.get("kind") == "rendered_emails"}
    legacy = {(str(r["run_id"]), str(r["wave"])) for r in records if r.get("kind") == "send_decisions" and not r.get("emails_sealed")}
    lines = []
    for decision in decisions.itertuples():
        stage = "" if decision.stage == STAGE_TEST else f" ({decision.stage})"
        verdict = log.latest("verdict", decision.segment, decision.variant_id, decision.seq)
        variant = log.latest("variant", decision.segment, decision.variant_id, decision.seq)
        if decision.hold_reason == HOLD_NO_EMAIL:
            lines.append(f"wave {decision.wave}{stage}, run {decision.run_id}: customer {customer_id} in segment '{decision.segment}': "
                         "NOT SENT (in the randomized no-email holdout: sent nothing on purpose, and measured)")
            continue
        if not decision.sent:
            outcome = f"NOT SENT ({decision.hold_reason})"
        elif (decision.run_id, decision.wave, decision.stage) in rendered:
            outcome = "SENT"
        elif (decision.run_id, decision.wave) in legacy:
            outcome = "SENT (recorded before emails were sealed)"
        else:  # decided to send, but the run stopped before its emails were rendered and sealed
            outcome = "NOT SENT (decided to send, but this run stopped before its emails were rendered)"
        lines.append(
            f"wave {decision.wave}{stage}, run {decision.run_id}: customer {customer_id} in segment '{decision.segment}', "
            f"arm '{decision.arm}', variant '{decision.variant_id}': {outcome}"
        )
        if variant:
            lines.append(
                f"  variant: subject {variant.get('subject')!r}; cites {variant.get('citations')}; "
                f"{variant.get('backend')}/{variant.get('model')}; prompt sha256 {str(variant.get('prompt_sha256'))[:12]}…"
            )
        if verdict:
            lines.append(
                f"  verdict: {verdict.get('decision')} under policy {verdict.get('policy_version')} by {verdict.get('backend')}; "
                f"severities {verdict.get('severities')}; rule hits {verdict.get('rule_hits') or 'none'}; "
                f"reasons: {verdict.get('reasons') or 'none'}"
            )
            if verdict.get("approval_mode") == MODE_REVIEWER and variant:
                earlier = [r for r in records if r["seq"] < decision.seq]
                review = reviews_from(earlier).get((decision.variant_id, str(variant.get("content_hash"))))
                lines.append(f"  approval: {review.decision} by {review.by} (audit record {review.seq})" if review
                             else "  approval: NONE RECORDED for this exact text before this decision")
            else:
                lines.append("  approval: by the automated screen (approval.mode: screen; no person reviewed the text)")
        else:
            lines.append("  verdict: NONE RECORDED before this decision")
    return "\n".join(lines)


def variant_records(variants: pd.DataFrame, run_id: str) -> list[dict]:
    """Chain records for generated variants (one each)."""
    columns = ["segment", "variant_id", "arm", "subject", "citations", "backend", "model", "prompt_sha256", "refusal", "validation_failures"]
    present = [c for c in columns if c in variants.columns]
    # The hash of the exact text (subject, body, CTA, citations) binds the record to what can be sent.
    rows = variants[present].assign(content_hash=content_hashes(variants))
    return [{"kind": "variant", "run_id": run_id, **row} for row in rows.to_dict("records")]


def verdict_records(verdicts: pd.DataFrame, run_id: str, *, approval_mode: str) -> list[dict]:
    """Chain records for safety verdicts (one each), severities by Azure category name, and how
    an approved verdict becomes sendable: by the screen alone, or after a reviewer's approval."""
    severity_columns = {"hate": "Hate", "self_harm": "SelfHarm", "sexual": "Sexual", "violence": "Violence"}
    records = []
    for row in verdicts.to_dict("records"):
        records.append(
            {
                "kind": "verdict",
                "run_id": run_id,
                **{k: row[k] for k in ("segment", "variant_id", "arm", "decision", "policy_version", "backend", "reasons")},
                "severities": {name: int(row[column]) for column, name in severity_columns.items()},
                "blocklist_hits": row["blocklist_hits"],
                "rule_hits": row["rule_hits"],
                "approval_mode": approval_mode,
                "content_hash": row.get("content_hash"),
            }
        )
    return records
