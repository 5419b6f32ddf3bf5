"""One run per output directory: an exclusive lock on `<run_dir>/run.lock`, held for the run's life.

The lock is the kernel's (`fcntl.flock`), so it goes away with its process however that process
ends (an exception, `os._exit`, SIGKILL): a lock file left by a dead run is stale by construction
and the next run takes it. The file names the holder (host, pid, command) for the message a
second run refusing to start prints.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType

from resdet.config import ConfigError

LOCK = "run.lock"


class RunLock:
    """``with RunLock(run_dir):`` holds ``run_dir``'s lock; entering raises a one-line
    `ConfigError` naming the holder when another live process holds it."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK
        self._file = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise ConfigError(
                f"{self.path.parent}: another run is using this output directory ({holder}); "
                "wait for it to end, or choose another output_dir"
            ) from None
        f.seek(0)
        f.truncate()
        holder = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(sys.argv),
        }
        f.write(json.dumps(holder))
        f.flush()
        self._file = f
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._file is not None:
            self.path.unlink(missing_ok=True)
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
