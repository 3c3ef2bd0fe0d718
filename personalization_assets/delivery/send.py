"""Deliver a wave's built messages through a mail transport, at most once each by the ledger.

`deliver` sends the open messages it is given (the `deliveries` asset has put the wave's messages
in the ledger and refused the ones that must not go) on up to `delivery.max_concurrency`
connections, at most `delivery.rate_per_second` a second. Each message is
marked `sending` before its transaction and `sent` with the server's reply when accepted; a
temporary (4xx) reply or a lost connection defers it, retried with doubling backoff while the
retry budget lasts (and by the next send). A permanent refusal of the recipient (5xx to RCPT with
status 5.1.x or 5.2.1: no such mailbox) bounces it and suppresses its address, in one ledger
transaction; any other permanent refusal (policy, relay, reputation, content: 5.7.x, or at DATA)
is the sender's problem: the message is deferred to the next send, nobody is suppressed, and
`SENDER_REFUSALS_TO_STOP` such refusals in a row stop the send. Only a reply the server gave about
a message counts toward `delivery.max_attempts`; a connection that fails does not.

A message left `sending` by a killed send is sent again on resume: it can arrive twice only when
the server accepted it and the process was killed, or the connection lost, before its reply was
read and recorded (the wait for that reply is `delivery.data_timeout_seconds`, 10 minutes by
default, as RFC 5321 asks); both copies have the same Message-ID.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from personalization_assets.campaign.config import DeliverySettings
from personalization_assets.delivery import ledger as ledger_statuses
from personalization_assets.delivery.ledger import Ledger
from personalization_assets.delivery.transport import (
    MailConnection,
    Reply,
    SessionRefused,
)

# Refusals in a row that are not the recipients' (no acceptance between them): the server refuses
# this sender, and going on would only defer the whole wave.
SENDER_REFUSALS_TO_STOP = 20


class RateLimiter:
    """A token bucket shared by the sending threads: at most `rate` messages a second, in bursts of at most one second's worth."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic):
        self.rate, self.capacity, self.clock = rate, max(1.0, rate), clock
        self.tokens, self.updated = self.capacity, clock()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        while True:
            with self._lock:
                now = self.clock()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                wait = (1 - self.tokens) / self.rate
            time.sleep(wait)


@dataclass(order=True)
class _Work:
    ready_at: float
    customer_id: str = field(compare=False)
    email: str = field(compare=False)
    raw: bytes = field(compare=False)
    attempts: int = field(compare=False)  # replies the server gave about it, over every send
    tries: int = field(default=0, compare=False)  # in this send, answered or not: sets the backoff


@dataclass
class SendReport:
    """What one send did: messages per outcome, and how long it took."""

    outcomes: Counter
    seconds: float

    def line(self) -> str:
        told = ", ".join(f"{status} {count}" for status, count in sorted(self.outcomes.items()))
        return f"{told or 'nothing to send'} in {self.seconds:.1f} s"


def deliver(path: Path, ledger: Ledger, *, campaign_id: str, wave: str, envelope_from: str, settings: DeliverySettings,
            connect: Callable[[], MailConnection], pending: pd.DataFrame, rate_limited: bool = True) -> SendReport:
    """Send `pending` (customer_id, email, attempts: the ledger's open messages of the wave) from the
    message file `path`, on connections made by `connect`; at `settings.rate_per_second` unless not
    `rate_limited` (the outbox folder has no server to spare)."""
    import duckdb

    started = time.monotonic()
    outcomes: Counter = Counter()
    if pending.empty:
        return SendReport(outcomes, 0.0)
    limiter = RateLimiter(settings.rate_per_second) if rate_limited else None
    deadline = started + settings.retry_budget_seconds
    queue: list[_Work] = []
    condition = threading.Condition()
    in_flight = 0
    feeding = True
    sender_refusals = 0
    failure: list[BaseException] = []

    def backoff(tries: int) -> float:
        return min(settings.retry_backoff_seconds * 2 ** max(tries - 1, 0), settings.retry_max_backoff_seconds)

    def count(status: str) -> None:
        with condition:
            outcomes[status] += 1

    def settle(work: _Work, reply: Reply) -> None:
        """Record a reply; a deferred message goes back on the queue while it has attempts and time left."""
        nonlocal sender_refusals
        if reply.accepted:
            ledger.mark(campaign_id, wave, work.customer_id, ledger_statuses.SENT, str(reply), attempt=True)
            with condition:
                sender_refusals = 0
            count(ledger_statuses.SENT)
        elif reply.recipient_rejected:
            ledger.bounce(campaign_id, wave, work.customer_id, work.email, str(reply), source=f"smtp {reply.code}: {campaign_id} {wave}")
            count(ledger_statuses.BOUNCED)
        elif reply.permanent:
            # Not the recipient's fault: deferred to the next send (counted as an attempt), nobody suppressed.
            ledger.mark(campaign_id, wave, work.customer_id, ledger_statuses.DEFERRED, str(reply), attempt=True)
            count(ledger_statuses.DEFERRED)
            with condition:
                sender_refusals += 1
                stop = sender_refusals >= SENDER_REFUSALS_TO_STOP
            if stop:
                raise SessionRefused(f"the server refused {SENDER_REFUSALS_TO_STOP} messages in a row for reasons that are not the "
                                     f"recipients' (the last: {reply}); they stay deferred, nobody was suppressed")
        else:
            ledger.mark(campaign_id, wave, work.customer_id, ledger_statuses.DEFERRED, str(reply), attempt=reply.answered)
            attempts, tries = work.attempts + int(reply.answered), work.tries + 1
            retry_at = time.monotonic() + backoff(tries)
            if attempts < settings.max_attempts and retry_at < deadline:
                with condition:
                    heapq.heappush(queue, _Work(retry_at, work.customer_id, work.email, work.raw, attempts, tries))
                    condition.notify()
                return
            count(ledger_statuses.DEFERRED)

    def worker() -> None:
        nonlocal in_flight
        connection: MailConnection | None = None
        try:
            connection = connect()
            while True:
                with condition:
                    while not failure:
                        # Only a message that is ready now: a deferred one waits in the queue, not in a worker.
                        wait = queue[0].ready_at - time.monotonic() if queue else None
                        if wait is not None and wait <= 0:
                            break
                        if wait is None and not (feeding or in_flight):
                            return
                        condition.wait(min(wait, 0.5) if wait is not None else 0.5)
                    if failure:
                        return
                    work = heapq.heappop(queue)
                    in_flight += 1
                try:
                    if limiter is not None:
                        limiter.acquire()
                    # Committed before the transaction: a kill from here on leaves it `sending`, sent again on resume.
                    if ledger.mark(campaign_id, wave, work.customer_id, ledger_statuses.SENDING):
                        settle(work, connection.send(envelope_from, work.email, work.raw))
                finally:
                    with condition:
                        in_flight -= 1
                        condition.notify_all()
        except BaseException as exc:  # a refused session, a ledger or programming error: stop every thread, report it
            with condition:
                failure.append(exc)
                queue.clear()
                condition.notify_all()
        finally:
            if connection is not None:
                connection.close()

    threads = [threading.Thread(target=worker, name=f"cpo-send-{i}", daemon=True) for i in range(settings.max_concurrency)]
    for thread in threads:
        thread.start()
    attempts = dict(zip(pending["customer_id"].astype(str), pending["attempts"].astype(int)))
    try:
        with duckdb.connect() as connection:
            connection.register("pending", pending[["customer_id"]].astype(str))
            cursor = connection.execute(
                "SELECT m.customer_id, m.email, m.raw FROM read_parquet(?) m SEMI JOIN pending p ON m.customer_id = p.customer_id",
                [path.as_posix()])
            while not failure:
                batch = cursor.fetchmany(1000)
                if not batch:
                    break
                with condition:
                    # Bounded memory: wait while a few batches are already waiting to be sent.
                    while len(queue) > 4 * 1000 and not failure:
                        condition.wait(0.5)
                    if failure:
                        break
                    for customer_id, address, raw in batch:
                        heapq.heappush(queue, _Work(0.0, str(customer_id), str(address), raw.encode("ascii"), attempts[str(customer_id)]))
                    condition.notify_all()
    except BaseException as exc:  # interrupted: the workers finish the message in hand and stop
        with condition:
            failure.append(exc)
            queue.clear()
        raise
    finally:
        with condition:
            feeding = False
            condition.notify_all()
        for thread in threads:
            thread.join()
    if failure:
        raise failure[0]
    return SendReport(outcomes, time.monotonic() - started)
