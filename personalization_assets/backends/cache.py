"""An on-disk response cache keyed on the full request, so an unchanged re-run costs nothing.

The key is the SHA-256 of the canonical JSON of everything that decides the answer: the backend
kind, the model, the messages and every generation parameter. One file per entry, written to a
temporary file and renamed into place (atomic on POSIX and Windows), so a run killed half-way
keeps every response that had arrived, and never leaves a half-written entry that a later run
would trust. A file that cannot be read is treated as missing.

Nothing secret is ever part of a key or an entry: keys and endpoints are not in the request
payload, and entries hold only the service's answer.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def request_key(request: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(request).encode("utf-8")).hexdigest()


class ResponseCache:
    """JSON responses under `directory/<first two hex digits>/<key>.json`."""

    def __init__(self, directory: Path | str):
        self.directory = Path(directory)

    def path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            entry = json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(entry, dict) or entry.get("key") != key or not isinstance(entry.get("response"), dict):
            return None
        return entry["response"]

    def put(self, key: str, response: Mapping[str, Any], *, request: Mapping[str, Any] | None = None) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        entry = {"key": key, "response": dict(response)}
        if request is not None:
            entry["request_sha256"] = request_key(request)
        handle, temporary = tempfile.mkstemp(prefix=f".{key[:8]}-", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.write(canonical_json(entry))
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def __len__(self) -> int:
        return sum(1 for _ in self.directory.glob("*/*.json")) if self.directory.is_dir() else 0
