"""Retries with exponential backoff and jitter, honouring the server's Retry-After, for every service.

Why the project retries itself: azure-core does not retry a 429 on a POST unless the response
carries `Retry-After`, and searches, uploads and text analysis are POSTs; the openai SDK retries
only twice. So every backend turns its SDK's own retries off (`max_retries=0`,
`retry_total=0`) and wraps each call in `call_with_retry`: one policy, and the retry counts in
the assets' metadata are exact (every retry is counted here, none hidden inside an SDK).

A server-requested wait (`retry-after-ms`, then `Retry-After` in seconds or as an HTTP date) is
honoured as given, plus a little jitter, never less; above `max_retry_after` the call gives up
rather than sleep for minutes. Without one, the wait is exponential with full jitter, capped at
`max_backoff`.

A call is retried within a time budget (`budget_seconds`, from its first attempt): a throttled
service is waited out, not given up on after a handful of tries; `max_attempts` only caps a call
that fails fast for ever. A retry whose wait would end past the budget is not made.
"""

from __future__ import annotations

import email.utils
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
# Throttling, request timeout, and server-side failures: worth asking again.
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 20  # attempts in all, the first one included
    base_backoff: float = 0.5  # seconds before the first retry (before jitter)
    max_backoff: float = 30.0  # cap of the exponential backoff
    max_retry_after: float = 120.0  # longest server-requested wait honoured (as the openai SDK)
    budget_seconds: float = 60.0  # time a call may take, its retries included

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.base_backoff < 0 or self.max_backoff < 0 or self.max_retry_after < 0 or self.budget_seconds < 0:
            raise ValueError("backoff and budget settings must be >= 0")

    def delay(self, retry_number: int, retry_after: float | None, rng: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry `retry_number` (1 for the first retry)."""
        if retry_after is not None and retry_after > 0:
            # Honour the server, never earlier; a little jitter so throttled workers do not return together.
            return retry_after + min(retry_after * 0.1, 1.0) * rng()
        ceiling = min(self.max_backoff, self.base_backoff * 2 ** (retry_number - 1))
        return ceiling * rng()  # full jitter


@dataclass(frozen=True)
class Failure:
    """How a backend reads one failed attempt."""

    retryable: bool
    reason: str  # "429", "503", "timeout", "connection", "malformed", ...
    retry_after: float | None = None


class RetriesExhausted(RuntimeError):
    def __init__(self, what: str, attempts: int, last: Failure, cause: BaseException, elapsed: float = 0.0):
        self.attempts = attempts
        self.last = last
        super().__init__(f"{what}: gave up after {attempts} attempts, last failure {last.reason}: {_short(cause)} "
                         f"({elapsed:.1f} s after the first attempt)")


class ServiceStats:
    """Thread-safe counters of one backend's calls: requests sent, retries by reason, cache use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._waited = 0.0

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def retried(self, reason: str, delay: float) -> None:
        with self._lock:
            self._counts["retries"] += 1
            self._counts[f"retries_{reason}"] += 1
            self._waited += delay

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return {**self._counts, "retry_wait_seconds": round(self._waited, 3)}


def parse_retry_after(headers: Mapping[str, str] | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds the server asks us to wait: `retry-after-ms`, `x-ms-retry-after-ms`, then `Retry-After`."""
    if not headers:
        return None
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    for name, divisor in (("retry-after-ms", 1000.0), ("x-ms-retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = lowered.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            continue
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    value = lowered.get("retry-after")
    if value:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if parsed is not None:
            return max(parsed.timestamp() - now(), 0.0)
    return None


def status_failure(status: int | None, headers: Mapping[str, str] | None) -> Failure:
    """A failure from an HTTP status: retryable for throttling and server errors."""
    reason = str(status) if status is not None else "unknown"
    return Failure(status in RETRYABLE_STATUS or (status is not None and status >= 500), reason, parse_retry_after(headers))


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def call_with_retry(
    operation: Callable[[], T],
    *,
    policy: RetryPolicy,
    classify: Callable[[BaseException], Failure | None],
    stats: ServiceStats | None = None,
    what: str = "request",
    sleep: Callable[[float], Any] = time.sleep,
    rng: Callable[[], float] = random.random,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Run `operation` until it succeeds, a failure is not retryable, or the attempts run out.

    `classify` reads an exception: None or `retryable=False` re-raises it at once (a 400 is not
    going to get better); otherwise the call is retried after `policy.delay`.
    """
    attempt = 0
    started = clock()
    while True:
        attempt += 1
        if stats:
            stats.count("requests")
        try:
            return operation()
        except Exception as exc:
            failure = classify(exc)
            if failure is None or not failure.retryable:
                if stats:
                    stats.count("failed_calls")
                raise
            too_long = failure.retry_after is not None and failure.retry_after > policy.max_retry_after
            delay = policy.delay(attempt, failure.retry_after, rng)
            elapsed = clock() - started
            if attempt >= policy.max_attempts or too_long or elapsed + delay > policy.budget_seconds:
                if stats:
                    stats.count("failed_calls")
                raise RetriesExhausted(what, attempt, failure, exc, elapsed) from exc
            if stats:
                stats.retried(failure.reason, delay)
            sleep(delay)
