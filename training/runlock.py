"""One training process per run directory.

Killing ``torchrun`` itself (SIGKILL to the launcher, e.g. ``kill -9`` of its PID) does not stop its
workers: they run in sessions of their own and keep training and writing checkpoints. A ``--resume``
started next to them would interleave two runs in one folder (seen on a 4-GPU host). Rank 0 therefore
holds ``run.lock`` (host, PID, start time) while it trains; a new run refuses a folder whose lock names
a live process, and takes over a lock whose process is gone (a crash, a killed job).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

LOCK_NAME = "run.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """``run.lock`` in a run directory, held by rank 0 of the run that trains there."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_NAME
        self.held = False
        self.previous: dict | None = None  # a stale lock taken over, for the log

    def acquire(self) -> str | None:
        """Take the lock; returns None, or why the folder is in use and what to do."""
        me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                owner = self._read()
                problem = self._in_use(owner)
                if problem:
                    return problem
                self.previous = owner
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(me, handle)
            self.held = True
            return None
        return f"could not create {self.path}; check that the folder is writable"

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def _in_use(self, owner: dict) -> str | None:
        pid, host = owner.get("pid"), owner.get("host")
        if not isinstance(pid, int):
            return None  # unreadable or half-written: treat as stale
        if host == socket.gethostname():
            if pid == os.getpid() or not _alive(pid):
                return None
            return (f"{self.path.parent} is in use by training process {pid} (started {owner.get('started')}); "
                    f"a torchrun killed on its own leaves its workers running. Stop it first "
                    f"(kill {pid}, or pkill -f training.train), then start again")
        return (f"{self.path.parent} is locked by a run on host {host} (pid {pid}, started {owner.get('started')}); "
                f"if no run is active there, delete {self.path} and start again")
