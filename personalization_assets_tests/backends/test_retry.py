"""Backoff with jitter, Retry-After honoured, exact retry counts: the policy every backend shares."""

import email.utils

import pytest

from personalization_assets.backends.retry import (
    Failure,
    RetriesExhausted,
    RetryPolicy,
    ServiceStats,
    call_with_retry,
    parse_retry_after,
    status_failure,
)


class Flaky:
    """Fails with the given failures in turn, then returns "ok"."""

    def __init__(self, *failures: Failure):
        self.failures = list(failures)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise FailureError(self.failures.pop(0))
        return "ok"


class FailureError(Exception):
    def __init__(self, failure: Failure):
        super().__init__(failure.reason)
        self.failure = failure


def classify(exc: BaseException) -> Failure | None:
    return exc.failure if isinstance(exc, FailureError) else None


def run(operation, policy=RetryPolicy(max_attempts=5, base_backoff=1.0, max_backoff=8.0), rng=lambda: 1.0):
    waits: list[float] = []
    stats = ServiceStats()
    result = call_with_retry(operation, policy=policy, classify=classify, stats=stats, sleep=waits.append, rng=rng)
    return result, waits, stats.snapshot()


def test_exponential_backoff_capped_with_full_jitter():
    flaky = Flaky(*[Failure(True, "503")] * 4)
    result, waits, stats = run(flaky)
    assert result == "ok" and flaky.calls == 5
    assert waits == [1.0, 2.0, 4.0, 8.0]  # rng() == 1.0: the ceiling itself
    _, jittered, _ = run(Flaky(*[Failure(True, "503")] * 4), rng=lambda: 0.25)
    assert jittered == [0.25, 0.5, 1.0, 2.0]
    _, capped, _ = run(Flaky(*[Failure(True, "500")] * 4), policy=RetryPolicy(max_attempts=5, base_backoff=1.0, max_backoff=3.0))
    assert capped == [1.0, 2.0, 3.0, 3.0]
    assert stats["requests"] == 5 and stats["retries"] == 4 and stats["retries_503"] == 4


def test_retry_after_is_honoured_never_shortened():
    flaky = Flaky(Failure(True, "429", retry_after=7.0), Failure(True, "429", retry_after=0.25))
    _, waits, stats = run(flaky, rng=lambda: 0.0)
    assert waits == [7.0, 0.25]  # longer than the 1 s / 2 s backoff would have been, and shorter too
    _, jittered, _ = run(Flaky(Failure(True, "429", retry_after=7.0)), rng=lambda: 1.0)
    assert 7.0 < jittered[0] <= 8.0  # a little jitter on top, never less
    assert stats["retries_429"] == 2


def test_gives_up_after_max_attempts_with_a_clear_error():
    flaky = Flaky(*[Failure(True, "429")] * 10)
    with pytest.raises(RetriesExhausted, match="gave up after 3 attempts, last failure 429") as error:
        call_with_retry(flaky, policy=RetryPolicy(max_attempts=3), classify=classify, sleep=lambda s: None)
    assert flaky.calls == 3 and error.value.attempts == 3


def test_non_retryable_failures_raise_at_once():
    flaky = Flaky(Failure(False, "400"))
    stats = ServiceStats()
    with pytest.raises(FailureError):
        call_with_retry(flaky, policy=RetryPolicy(), classify=classify, stats=stats, sleep=lambda s: pytest.fail("slept"))
    assert flaky.calls == 1 and stats.snapshot()["failed_calls"] == 1 and "retries" not in stats.snapshot()

    def boom():
        raise KeyError("not classified")

    with pytest.raises(KeyError):
        call_with_retry(boom, policy=RetryPolicy(), classify=classify, sleep=lambda s: pytest.fail("slept"))


def test_a_wait_longer_than_the_limit_is_not_slept():
    flaky = Flaky(Failure(True, "429", retry_after=600.0))
    with pytest.raises(RetriesExhausted):
        call_with_retry(flaky, policy=RetryPolicy(max_retry_after=120), classify=classify, sleep=lambda s: pytest.fail("slept"))
    assert flaky.calls == 1


def test_parse_retry_after_headers():
    assert parse_retry_after({"retry-after-ms": "250", "Retry-After": "3"}) == 0.25  # milliseconds first
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert parse_retry_after({"x-ms-retry-after-ms": "1500"}) == 1.5
    assert parse_retry_after({"RETRY-AFTER": "0.5"}) == 0.5  # case-insensitive
    assert parse_retry_after({}) is None and parse_retry_after(None) is None
    assert parse_retry_after({"retry-after": "soon"}) is None
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=lambda: 1_000_000) == pytest.approx(30.0)


def test_status_failures():
    for status in (408, 429, 500, 502, 503, 504, 599):
        assert status_failure(status, {}).retryable, status
    for status in (400, 401, 403, 404, 409, 413):
        assert not status_failure(status, {}).retryable, status
    assert status_failure(429, {"retry-after-ms": "20"}).retry_after == 0.02


def test_a_call_is_retried_within_its_time_budget_not_past_it():
    """Throttled for longer than a few attempts, a call is waited out within its budget; a retry
    whose wait would end past the budget is not made, and the error says how long it tried."""
    now = [0.0]
    flaky = Flaky(*[Failure(True, "429", retry_after=10.0)] * 30)
    with pytest.raises(RetriesExhausted, match=r"gave up after 4 attempts, last failure 429: .* \(30\.0 s after the first attempt\)"):
        call_with_retry(flaky, policy=RetryPolicy(max_attempts=50, budget_seconds=35.0), classify=classify,
                        sleep=lambda s: now.__setitem__(0, now[0] + s), rng=lambda: 0.0, clock=lambda: now[0])
    # Four attempts at 0, 10, 20 and 30 s: a fifth would start at 40 s, past the 35 s budget.
    assert flaky.calls == 4
    now[0] = 0.0
    assert call_with_retry(Flaky(*[Failure(True, "503")] * 12), policy=RetryPolicy(base_backoff=0.01, max_backoff=0.01),
                           classify=classify, sleep=lambda s: None) == "ok"  # twelve failures in a row: still waited out
