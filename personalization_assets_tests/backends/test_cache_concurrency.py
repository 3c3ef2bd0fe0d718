"""The on-disk response cache (atomic entries, full-request keys) and the ordered bounded pool."""

import json
import threading
import time

import pytest

from personalization_assets.backends.cache import ResponseCache, request_key
from personalization_assets.backends.concurrency import bounded_map

REQUEST = {"backend": "azure-openai", "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.7}


def test_key_covers_the_whole_request_and_ignores_key_order():
    assert request_key(REQUEST) == request_key(dict(reversed(list(REQUEST.items()))))
    changed = [
        {**REQUEST, "model": "gpt-4o"},
        {**REQUEST, "messages": [{"role": "user", "content": "hi!"}]},
        {**REQUEST, "temperature": 0.2},
        {**REQUEST, "max_tokens": 10},
        {**REQUEST, "backend": "openai-compatible"},
    ]
    assert len({request_key(REQUEST), *map(request_key, changed)}) == 1 + len(changed)


def test_entries_round_trip_atomically(tmp_path):
    cache = ResponseCache(tmp_path / "cache")
    key = request_key(REQUEST)
    assert cache.get(key) is None
    cache.put(key, {"choices": [1]})
    assert cache.get(key) == {"choices": [1]}
    assert len(cache) == 1
    assert not list((tmp_path / "cache").rglob("*.tmp"))  # nothing half-written left behind


def test_damaged_or_foreign_entries_count_as_missing(tmp_path):
    cache = ResponseCache(tmp_path)
    key = request_key(REQUEST)
    cache.path(key).parent.mkdir(parents=True)
    cache.path(key).write_text('{"key": "')  # a torn write from some other tool
    assert cache.get(key) is None
    cache.path(key).write_text(json.dumps({"key": "another", "response": {}}))
    assert cache.get(key) is None
    # A temporary file of a write that was killed is never read as an entry.
    (cache.path(key).parent / f".{key[:8]}-x.tmp").write_text(json.dumps({"key": key, "response": {"x": 1}}))
    assert cache.get(key) is None


def test_bounded_map_keeps_order_and_the_limit():
    active, peak, lock = 0, 0, threading.Lock()

    def work(n: int) -> int:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.01 * (n % 3))
        with lock:
            active -= 1
        return n * n

    assert bounded_map(work, range(20), max_workers=4) == [n * n for n in range(20)]
    assert 1 < peak <= 4
    with pytest.raises(ValueError):
        bounded_map(work, [1], max_workers=0)


def test_bounded_map_raises_the_first_error_and_cancels_the_rest():
    started = []

    def work(n: int) -> int:
        started.append(n)
        if n == 0:
            raise RuntimeError("boom")
        time.sleep(0.05)
        return n

    with pytest.raises(RuntimeError, match="boom"):
        bounded_map(work, range(50), max_workers=2)
    assert len(started) < 50
