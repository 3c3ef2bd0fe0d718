"""One writer per `CPO_HOME`: a second `cpo run` on the same home refuses instead of racing.

Two runs on one home would each write the warehouse, the reports and the audit trail, the last
writer winning per step while both report success. `exclusive_home` takes an advisory lock
(`fcntl.flock`) on `$CPO_HOME/cpo.lock` for the length of a command that writes; the lock goes
with the process, so a killed run never leaves a stale lock behind. The file records who holds
it, for the message the second run prints.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_FILE = "cpo.lock"


class HomeBusyError(RuntimeError):
    """Another cpo command holds this CPO_HOME."""


@contextmanager
def exclusive_home(home: Path) -> Iterator[None]:
    home.mkdir(parents=True, exist_ok=True)
    with open(home / LOCK_FILE, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise HomeBusyError(f"{home} is in use by {holder}; wait for it to finish, or set CPO_HOME to another folder") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"cpo (pid {os.getpid()}, since {dt.datetime.now().isoformat(timespec='seconds')})")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)
