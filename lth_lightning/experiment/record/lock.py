"""One process per run folder: the run's lock, held while it trains, names its holder to anyone else.

The lock is an OS file lock (``filelock``: ``flock`` on POSIX, with filelock's own fallback on
file systems without it), so the lock of a process that died, even killed, is free again: the
next run takes it over. Only rank zero of a DDP run locks (the other ranks write nothing there).
Each seed of an experiment has its own run folder, hence its own lock: seeds run side by side,
on one machine or many (a SLURM array).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from filelock import FileLock, Timeout

from lth_lightning.experiment.record.paths import RunPaths

__all__ = ["RunFolderInUse", "RunLock"]


class RunFolderInUse(RuntimeError):
    """Another process runs in this run folder."""


class RunLock:
    """The lock of one run folder (created if missing), for the process that runs in it.

    Args:
        folder: The run folder (``<experiment>/seed_<s>``).
    """

    def __init__(self, folder: Path) -> None:
        self.paths = RunPaths(Path(folder))
        self._lock: FileLock | None = None

    def acquire(self) -> RunLock:
        """Take the lock, and say who holds it.

        Raises:
            RunFolderInUse: If another process holds it (its pid and host are named).
        """
        if self._lock is not None:
            return self
        self.paths.root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.paths.lock))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise RunFolderInUse(
                f"The run folder {self.paths.root} is in use by {self._holder()}: one process runs in a run folder "
                "at a time. Let it finish (rerunning then reads its rounds back) or stop it; another seed has its "
                "own folder and can run beside it."
            ) from None
        self._lock = lock
        since = time.strftime("%Y-%m-%d %H:%M:%S")
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": since}
        self.paths.lock_owner.write_text(json.dumps(owner))
        return self

    def _holder(self) -> str:
        try:
            owner = json.loads(self.paths.lock_owner.read_text())
            return f"process {owner['pid']} on {owner['host']} (since {owner['since']})"
        except (OSError, ValueError, KeyError, TypeError):
            return "another process (it has not said which yet)"

    def release(self) -> None:
        """Give the lock back (nothing if not held)."""
        if self._lock is None:
            return
        self.paths.lock_owner.unlink(missing_ok=True)
        self._lock.release()
        self._lock = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()
