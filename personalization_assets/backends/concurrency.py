"""A bounded thread pool map that keeps the input order.

LLM and safety calls are network-bound, so threads are the right tool: the SDK clients are
thread-safe, and a limit keeps the service's rate limits (and our retries) in proportion.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def bounded_map(function: Callable[[T], R], items: Iterable[T], max_workers: int) -> list[R]:
    """`[function(item) for item in items]`, at most `max_workers` at a time, results in input order.

    An exception from any call propagates: calls not started yet are cancelled, running ones
    finish first. Callers that want one result per item catch inside `function`.
    """
    items = list(items)
    if max_workers < 1:
        raise ValueError(f"max_workers must be >= 1, got {max_workers}")
    if max_workers == 1 or len(items) <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(max_workers, len(items)), thread_name_prefix="cpo-backend") as pool:
        futures = [pool.submit(function, item) for item in items]
        try:
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()  # the ones not started yet; running ones finish
            raise
