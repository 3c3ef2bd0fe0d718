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
import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from personalization_assets.safety.approval import (
    MODE_REVIEWER,
    content_hashes,
    reviews_from,
)

GENESIS_HASH = "0" * 64
CHAIN_FILE = "chain.jsonl"
DECISION_FIELDS = ("wave", "customer_id", "segment", "arm", "variant_id", "sent", "hold_reason")


def _canonical(record: Mapping[str, object]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), default=str).encode()


def record_hash(record: Mapping[str, object]) -> str:
    """The hash of every field of a record except its own hash."""
    return hashlib.sha256(_canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


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

    def _head(self) -> tuple[int, str]:
        """Sequence number and hash of the last record."""
        if not self.chain_path.exists() or self.chain_path.stat().st_size == 0:
            return 0, GENESIS_HASH
        with open(self.chain_path, "rb") as handle:
            handle.seek(0, 2)
            position = handle.tell()
            # Read backwards until the start of the last line: the chain can be long.
            block = b""
            while position > 0 and block.count(b"\n") < 2:
                step = min(4096, position)
                position -= step
                handle.seek(position)
                block = handle.read(step) + block
        last = json.loads(block.rstrip(b"\n").rsplit(b"\n", 1)[-1])
        return int(last["seq"]), str(last["hash"])

    def _append_locked(self, records: Iterable[Mapping[str, object]]) -> list[dict]:
        seq, previous = self._head()
        written = []
        timestamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")
        with open(self.chain_path, "a") as handle:
            for record in records:
                seq += 1
                full = {**record, "seq": seq, "timestamp": record.get("timestamp", timestamp), "prev_hash": previous}
                full["hash"] = record_hash(full)
                handle.write(_canonical(full).decode() + "\n")
                previous = full["hash"]
                written.append(full)
        return written

    def append(self, records: Iterable[Mapping[str, object]]) -> list[dict]:
        """Append records (kind, run_id, ... any JSON fields); returns them as written."""
        with self._locked():
            return self._append_locked(records)

    def append_send_decisions(self, run_id: str, wave: str, decisions: pd.DataFrame) -> dict:
        """Write one row per customer decision and seal them with one chain record."""
        with self._locked():
            _, previous = self._head()
            folder = self.directory / "decisions" / wave
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{run_id}.parquet"
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
                root, count, sent = connection.execute(
                    "SELECT sha256(string_agg(record_hash, '' ORDER BY row)), count(*), count(*) FILTER (WHERE sent) FROM hashed"
                ).fetchone()
            return self._append_locked(
                [
                    {
                        "kind": "send_decisions",
                        "run_id": run_id,
                        "wave": wave,
                        "file": path.relative_to(self.directory).as_posix(),
                        "rows": int(count),
                        "sent": int(sent),
                        "held": int(count - sent),
                        "root_hash": root,
                        "first_prev_hash": previous,
                    }
                ]
            )[0]

    # --- reading ---------------------------------------------------------------------------

    def records(self) -> list[dict]:
        if not self.chain_path.exists():
            return []
        with open(self.chain_path) as handle:
            return [json.loads(line) for line in handle if line.strip()]

    def verify(self) -> tuple[int, Problem | None]:
        """Check every record and every decision row; returns (records checked, first problem)."""
        previous = GENESIS_HASH
        line_number = 0
        if not self.chain_path.exists():
            return 0, None
        with open(self.chain_path) as handle:
            for line_number, line in enumerate(handle, start=1):
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    return line_number, Problem(line_number, "?", "not valid JSON")
                kind = str(record.get("kind", "?"))
                if record.get("seq") != line_number:
                    return line_number, Problem(line_number, kind, f"sequence {record.get('seq')} where {line_number} was expected (a record was removed or inserted)")
                if record.get("prev_hash") != previous:
                    return line_number, Problem(line_number, kind, "previous-record hash does not match (a record before it was changed, removed or inserted)")
                if record.get("hash") != record_hash(record):
                    return line_number, Problem(line_number, kind, "record hash does not match its contents (the record was changed)")
                if kind == "send_decisions":
                    problem = self._verify_decisions(record)
                    if problem:
                        return line_number, Problem(line_number, kind, problem)
                previous = record["hash"]
        return line_number, None

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
        files = [(self.directory / f).as_posix() for f in sealed["file"]]
        query = "SELECT * FROM read_parquet(?) WHERE customer_id = ?" + (" AND wave = ?" if wave else "")
        with duckdb.connect() as connection:
            rows = connection.execute(query, [files, customer_id, *([wave] if wave else [])]).df()
        return rows.merge(sealed[["run_id", "wave", "seq"]], on=["run_id", "wave"]).sort_values("seq")

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
        verdicts = pd.DataFrame([r for r in records if r.get("kind") == "verdict"], columns=["seq", "segment", "variant_id", "decision"])
        sealed = [r for r in records if r.get("kind") == "send_decisions"]
        if not sealed:
            return pd.DataFrame(columns=["customer_id", "segment", "variant_id", "decision"])
        with duckdb.connect() as connection:
            sent = connection.execute(
                "SELECT run_id, wave, customer_id, segment, variant_id FROM read_parquet(?) WHERE sent",
                [[(self.directory / r["file"]).as_posix() for r in sealed]],
            ).df()
        seqs = pd.DataFrame([{"run_id": r["run_id"], "wave": r["wave"], "seq": r["seq"]} for r in sealed])
        sent = sent.merge(seqs, on=["run_id", "wave"]).sort_values("seq")
        traced = pd.merge_asof(
            sent, verdicts.sort_values("seq"), on="seq", by=["segment", "variant_id"], direction="backward"
        )
        return traced[traced["decision"].ne("approved")]


def explain(log: AuditLog, customer_id: str, wave: str | None = None) -> str:
    """Why a customer got (or did not get) which message, from the audit trail alone."""
    decisions = log.decisions_for(customer_id, wave)
    if decisions.empty:
        scope = f" in wave {wave}" if wave else ""
        return f"no recorded send decision for customer {customer_id}{scope}"
    lines = []
    for decision in decisions.itertuples():
        verdict = log.latest("verdict", decision.segment, decision.variant_id, decision.seq)
        variant = log.latest("variant", decision.segment, decision.variant_id, decision.seq)
        outcome = "SENT" if decision.sent else f"NOT SENT ({decision.hold_reason})"
        lines.append(
            f"wave {decision.wave}, run {decision.run_id}: customer {customer_id} in segment '{decision.segment}', "
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
                earlier = [r for r in log.records() if r["seq"] < decision.seq]
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
            }
        )
    return records
