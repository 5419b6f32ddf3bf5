"""Atomic file writes: a reader sees the old file or the complete new one, never a partial write;
and `ensure_writable_dir`, the up-front check of a tool's output folder.

The data goes to a temporary file in the destination's directory (same file system, so the rename is
atomic), is flushed and fsync'ed, then `os.replace`d over the destination; the directory is fsync'ed
so the rename itself survives a crash. On any error the temporary file is removed and the
destination is untouched.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call `write(f)` on a temporary binary file and atomically move it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Atomically replace `path` with `text` (UTF-8)."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """Atomically replace `path` with `torch.save(obj)`."""
    return atomic_write(path, lambda f: torch.save(obj, f))


class OutputDirError(ValueError):
    """An output folder cannot be created or written to; the message names it and says why."""


def ensure_writable_dir(path: str | Path, what: str = "output folder") -> Path:
    """Create `path` (and its parents) if needed and check that a file can be created in it, by
    creating and removing a temporary one; -> `path`. Called before a tool does its work, so an
    unwritable folder, or a file where the folder should be, is one `OutputDirError` naming the
    path (`what` says which: "output folder", "--output-dir", ...) instead of a traceback at the
    end."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputDirError(f"{what} {path} is a file, not a folder; pick another path")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=path)
    except OSError as e:  # permission, a parent that is a file, read-only file system, ...
        raise OutputDirError(
            f"{what} {path} cannot be written to ({e.strerror or e}); pick another path"
        ) from None
    os.close(fd)
    Path(probe).unlink(missing_ok=True)
    return path


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
