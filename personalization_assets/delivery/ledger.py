"""The delivery ledger: one row per (campaign, wave, customer) message and what became of it, shared by
every campaign in a CPO_HOME (`$CPO_HOME/delivery/ledger.sqlite3`).

It is what makes a send idempotent and resumable: a message is marked `sending` (committed) before
its SMTP transaction starts and `sent` (committed, with the server's reply) as soon as the server
accepts it, so a send killed at any point and started again sends every message not yet accepted,
and no message the ledger records as accepted again. It also holds the suppression entries that
flow back (bounces, imported unsubscribes), and each wave's plan time: the moment the wave's
audience is decided, which fixes the suppression entries and the sends that its frequency cap
counts, so re-running a wave later decides the same audience.

SQLite in WAL mode: many readers and one writer at a time across processes, every change a
transaction, durable when a process is killed.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

LEDGER_FILE = "ledger.sqlite3"
# The embedded outbox's records: a rehearsal, kept apart from the real sends (and their caps).
REHEARSAL_LEDGER_FILE = "outbox-ledger.sqlite3"
QUEUED, SENDING, SENT, DEFERRED, BOUNCED = "queued", "sending", "sent", "deferred", "bounced"
SUPPRESSED, WITHHELD, EXPORTED, FAILED = "suppressed", "withheld", "exported", "failed"
STATUS_MEANINGS = {
    QUEUED: "in the ledger, not tried yet",
    SENDING: "an SMTP transaction was started and not answered (a killed send); it is sent again on resume",
    SENT: "the mail server accepted it (its reply is recorded)",
    DEFERRED: "a temporary (4xx) reply or a lost connection; retried with backoff, also by the next send",
    BOUNCED: "the server refused the recipient for good (5xx to RCPT: no such mailbox); the address joins the suppression list",
    SUPPRESSED: "suppressed when the send ran (unsubscribed, bounced, complained, ...): not sent",
    WITHHELD: ("refused when the send ran (its variant not approved now, no longer in the wave's assignments or message file at "
               "that address, or over delivery.frequency_cap): not sent"),
    EXPORTED: "handed to an ESP in an import bundle",
    FAILED: "refused or deferred by the server delivery.max_attempts times: not sent, not suppressed",
}
# Still to be sent by the next `cpo send`.
OPEN_STATUSES = (QUEUED, SENDING, DEFERRED)
# Handed to a server or an ESP at least once: the wave's built messages are kept from then on.
HANDED_OVER_STATUSES = (SENDING, SENT, DEFERRED, BOUNCED, EXPORTED)
# What a frequency cap counts: messages a server accepted or an ESP was given to send.
DELIVERED_STATUSES = (SENT, EXPORTED)
LEDGER_COLUMNS = ("wave", "customer_id", "email", "message_id", "raw_sha256", "status", "attempts", "reply", "queued_at", "updated_at",
                  "sent_at")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    campaign_id TEXT NOT NULL, wave TEXT NOT NULL, customer_id TEXT NOT NULL, email TEXT NOT NULL,
    message_id TEXT NOT NULL, raw_sha256 TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    reply TEXT NOT NULL DEFAULT '', queued_at TEXT NOT NULL, updated_at TEXT NOT NULL, sent_at TEXT,
    PRIMARY KEY (campaign_id, wave, customer_id)
);
CREATE INDEX IF NOT EXISTS deliveries_by_address ON deliveries (email, sent_at);
CREATE TABLE IF NOT EXISTS suppressions (
    customer_id TEXT NOT NULL DEFAULT '', email TEXT NOT NULL DEFAULT '', reason TEXT NOT NULL, source TEXT NOT NULL,
    added_at TEXT NOT NULL, PRIMARY KEY (customer_id, email, reason)
);
CREATE TABLE IF NOT EXISTS wave_plans (
    campaign_id TEXT NOT NULL, wave TEXT NOT NULL, planned_at TEXT NOT NULL, PRIMARY KEY (campaign_id, wave)
);
"""


def rehearsal_ledger_path(ledger_path: Path) -> Path:
    return ledger_path.with_name(REHEARSAL_LEDGER_FILE)


class SendInProgress(Exception):
    """Another send of this CPO_HOME holds the send lock."""


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="microseconds")


class Ledger:
    """The ledger file; safe to share between threads (one connection, one lock) and processes (SQLite locking)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._connection = sqlite3.connect(self.path, timeout=60, check_same_thread=False, isolation_level=None)
        self._connection.execute("PRAGMA journal_mode=WAL")
        # WAL with synchronous=NORMAL: a committed change survives the process being killed.
        self._connection.execute("PRAGMA synchronous=NORMAL")
        with self._transaction() as connection:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                connection.execute(statement)

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                yield self._connection
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")

    def _frame(self, query: str, params: Iterable[object] = ()) -> pd.DataFrame:
        with self._lock:
            cursor = self._connection.execute(query, list(params))
            names = [column[0] for column in cursor.description]
            return pd.DataFrame(cursor.fetchall(), columns=names)

    # --- waves -------------------------------------------------------------------------------

    def plan_time(self, campaign_id: str, wave: str, now: dt.datetime | None = None) -> dt.datetime:
        """When the wave's audience was first decided (now, the first time it is asked)."""
        with self._transaction() as connection:
            connection.execute("INSERT OR IGNORE INTO wave_plans VALUES (?, ?, ?)", [campaign_id, wave, _stamp(now or now_utc())])
            (planned,) = connection.execute("SELECT planned_at FROM wave_plans WHERE campaign_id = ? AND wave = ?",
                                            [campaign_id, wave]).fetchone()
        return dt.datetime.fromisoformat(planned)

    def deliveries_by_address(self, since: dt.datetime, until: dt.datetime, *, other_than: tuple[str, str]) -> pd.Series:
        """How many messages each (lower-cased) address was sent in [since, until), by every campaign
        and wave but `other_than` (a re-run of a wave does not count its own sends)."""
        frame = self._frame(
            f"SELECT email, count(*) AS sends FROM deliveries WHERE status IN ({', '.join('?' * len(DELIVERED_STATUSES))}) "
            "AND sent_at >= ? AND sent_at < ? AND NOT (campaign_id = ? AND wave = ?) GROUP BY email",
            [*DELIVERED_STATUSES, _stamp(since), _stamp(until), *other_than])
        return pd.Series(frame["sends"].to_numpy(), index=frame["email"].to_numpy(dtype=object), dtype="int64")

    @contextmanager
    def sending(self) -> Iterator[None]:
        """Hold the home's send lock: one send at a time in this CPO_HOME (the CLI's, a UI run's, a
        schedule's), so no two can claim the same message, and no two campaigns' sends can both
        pass a frequency cap that counts the other's; a second is refused, never queued."""
        import fcntl

        with open(self.path.parent / "send.lock", "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SendInProgress(f"another send is running in {self.path.parent.parent} (CPO_HOME); wait for it to finish") from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # --- messages ----------------------------------------------------------------------------

    def enqueue(self, campaign_id: str, wave: str, messages: pd.DataFrame) -> int:
        """Add the wave's messages (customer_id, email, message_id, raw_sha256) not in the ledger yet, and
        take the rebuilt bytes of those never tried; returns how many rows changed."""
        stamp = _stamp(now_utc())
        rows = zip(messages["customer_id"].astype(str), messages["email"].astype(str).str.lower(), messages["message_id"].astype(str),
                   messages["raw_sha256"].astype(str))
        with self._transaction() as connection:
            before = connection.total_changes
            connection.executemany(
                "INSERT INTO deliveries (campaign_id, wave, customer_id, email, message_id, raw_sha256, status, queued_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET raw_sha256 = excluded.raw_sha256, "
                "email = excluded.email WHERE status = 'queued' AND raw_sha256 <> excluded.raw_sha256",
                ((campaign_id, wave, customer, address, message, digest, QUEUED, stamp, stamp) for customer, address, message, digest in rows))
            return connection.total_changes - before

    def rows(self, campaign_id: str, wave: str, statuses: Iterable[str] | None = None) -> pd.DataFrame:
        """The wave's ledger rows (LEDGER_COLUMNS), in customer order; only `statuses` when given."""
        statuses = tuple(statuses) if statuses is not None else None
        where = f" AND status IN ({', '.join('?' * len(statuses))})" if statuses else ""
        return self._frame(f"SELECT {', '.join(LEDGER_COLUMNS)} FROM deliveries WHERE campaign_id = ? AND wave = ?{where} ORDER BY customer_id",
                           [campaign_id, wave, *(statuses or ())])

    def mark(self, campaign_id: str, wave: str, customer_id: str, status: str, reply: str = "", *, attempt: bool = False) -> bool:
        """Record one message's new status (and the server's reply) in its own transaction, only
        while it is open (never a message already sent or refused): whether it changed. An
        `attempt` (a reply the server gave about this message) counts toward delivery.max_attempts."""
        with self._transaction() as connection:
            return self._mark(connection, campaign_id, wave, customer_id, status, reply, attempt)

    @staticmethod
    def _mark(connection, campaign_id: str, wave: str, customer_id: str, status: str, reply: str, attempt: bool) -> bool:
        stamp = _stamp(now_utc())
        cursor = connection.execute(
            "UPDATE deliveries SET status = ?, reply = CASE WHEN ? = '' THEN reply ELSE ? END, attempts = attempts + ?, updated_at = ?, "
            "sent_at = CASE WHEN ? IN ('sent', 'exported') THEN ? ELSE sent_at END WHERE campaign_id = ? AND wave = ? AND customer_id = ? "
            f"AND status IN ({', '.join('?' * len(OPEN_STATUSES))})",
            [status, reply, reply[:1000], int(attempt), stamp, status, stamp, campaign_id, wave, customer_id, *OPEN_STATUSES])
        return cursor.rowcount > 0

    def bounce(self, campaign_id: str, wave: str, customer_id: str, email: str, reply: str, source: str) -> bool:
        """Record a bounce and put its address on the suppression list, in one transaction: a kill
        never leaves a bounced message whose address is not suppressed."""
        with self._transaction() as connection:
            changed = self._mark(connection, campaign_id, wave, customer_id, BOUNCED, reply, True)
            if changed:
                self._add_suppressions(connection, [(customer_id, email.strip().lower(), "bounced")], source)
            return changed

    def mark_many(self, campaign_id: str, wave: str, customer_ids: Iterable[str], status: str, reply: str, *,
                  only: tuple[str, ...] = OPEN_STATUSES) -> int:
        """Set `status` for many messages still in one of `only` at once; returns how many changed."""
        stamp = _stamp(now_utc())
        with self._transaction() as connection:
            before = connection.total_changes
            connection.executemany(
                f"UPDATE deliveries SET status = ?, reply = ?, updated_at = ?, sent_at = CASE WHEN ? IN ('sent', 'exported') THEN ? ELSE sent_at END "
                f"WHERE campaign_id = ? AND wave = ? AND customer_id = ? AND status IN ({', '.join('?' * len(only))})",
                ((status, reply, stamp, status, stamp, campaign_id, wave, str(customer), *only) for customer in customer_ids))
            return connection.total_changes - before

    # --- suppression -------------------------------------------------------------------------

    def add_suppressions(self, entries: pd.DataFrame, source: str) -> int:
        """Add entries (customer_id and/or email, reason) to the shared suppression list; returns how many were new."""
        frame = entries.reindex(columns=["customer_id", "email", "reason"]).fillna("").astype(str)
        with self._transaction() as connection:
            return self._add_suppressions(connection, zip(frame["customer_id"].str.strip(), frame["email"].str.strip().str.lower(),
                                                          frame["reason"]), source)

    @staticmethod
    def _add_suppressions(connection, rows: Iterable[tuple[str, str, str]], source: str) -> int:
        stamp = _stamp(now_utc())
        before = connection.total_changes
        connection.executemany("INSERT OR IGNORE INTO suppressions VALUES (?, ?, ?, ?, ?)",
                               ((customer, address, reason, source, stamp) for customer, address, reason in rows))
        return connection.total_changes - before

    def suppressions(self, as_of: dt.datetime | None = None) -> pd.DataFrame:
        """The shared suppression entries (customer_id, email, reason, source, added_at), those added by `as_of` when given."""
        where, params = ("WHERE added_at <= ?", [_stamp(as_of)]) if as_of is not None else ("", [])
        return self._frame(f"SELECT customer_id, email, reason, source, added_at FROM suppressions {where} ORDER BY added_at, rowid", params)
