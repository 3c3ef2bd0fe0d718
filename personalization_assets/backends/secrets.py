"""Scrubbing secrets from what a service says back: no key is ever stored or printed.

A service that refuses a key often quotes it ("Incorrect API key provided: sk-...abcd"), whole or
masked, and that text would otherwise travel into a variant's refusal, a verdict's reasons, a
Dagster event or the audit trail. Every error text a remote backend hands on passes through
`Scrubber`, which replaces each configured secret, and any word sharing a run of WINDOW characters
with one (a masked or cut echo), by REDACTED.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "[redacted]"
# Eight characters of a random key do not occur in ordinary words; a masked echo keeps more.
WINDOW = 8
_WORD = re.compile(r"[^\s\"'<>(),;]+")


class ServiceError(RuntimeError):
    """A remote service failed; the message has been scrubbed of every configured secret."""


class Scrubber:
    def __init__(self, secrets: Iterable[str]):
        self.secrets = tuple(sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True))
        self._windows = frozenset(s[i : i + WINDOW] for s in self.secrets for i in range(len(s) - WINDOW + 1))

    def __call__(self, text: str | None) -> str | None:
        if not text or not self.secrets:
            return text
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return _WORD.sub(lambda word: REDACTED if self._echoes(word.group(0)) else word.group(0), text)

    def _echoes(self, word: str) -> bool:
        return len(word) >= WINDOW and any(word[i : i + WINDOW] in self._windows for i in range(len(word) - WINDOW + 1))

    def error(self, exc: BaseException) -> ServiceError:
        """`exc` as a ServiceError whose message is scrubbed; raise it `from None`, so the original
        (whose message may quote the key) is not kept as its cause."""
        return ServiceError(self(" ".join(f"{type(exc).__name__}: {exc}".split())))
