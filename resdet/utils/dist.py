"""Distributed state for runs launched by `torchrun` (or a single plain process).

`torchrun` sets `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR` and `MASTER_PORT`; a plain
`python` run has none of them and is rank 0 of 1. GPUs use NCCL, CPUs gloo.
"""

from __future__ import annotations

import datetime
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None


def init_distributed(device: str | None = None, timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group described by the environment (no-op for a single process).

    `device`: "cuda", "cpu" or None (CUDA when available). Each rank uses GPU `LOCAL_RANK`.
    `timeout_s` bounds how long a rank waits in a collective for a peer that died or hangs.
    """
    rank, world_size = _env_int("RANK", 0), _env_int("WORLD_SIZE", 1)
    local_rank = _env_int("LOCAL_RANK", 0)
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK={rank} is outside WORLD_SIZE={world_size}")
    kind = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' was asked for but CUDA is not available")
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device(kind)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if dev.type == "cuda" else "gloo",
            rank=rank,
            world_size=world_size,
            timeout=datetime.timedelta(seconds=timeout_s),
            device_id=dev if dev.type == "cuda" else None,
        )
    return DistInfo(rank, world_size, local_rank, dev)


def shutdown_distributed() -> None:
    """Leave the process group after a successful run (every rank calls it)."""
    if dist.is_available() and dist.is_initialized():
        barrier()
        dist.destroy_process_group()


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def barrier() -> None:
    """Wait for every rank (e.g. while rank 0 prepares a shared cache); a no-op for one process."""
    if get_world_size() > 1:
        dist.barrier()


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order (just `[obj]` for one process)."""
    if get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s `obj` on every rank."""
    if get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """Mean of `t` over ranks (a new tensor; `t` itself for one process)."""
    if get_world_size() == 1:
        return t
    t = t.clone()
    dist.all_reduce(t)
    return t / get_world_size()


def exit_on_failure(
    main: Callable[[], T], *, expected: tuple[type[BaseException], ...] = (), prog: str = "resdet"
) -> T:
    """Run `main()`; if it raises, report the error with this rank and end the process with code 1
    (or the code of a non-zero `SystemExit`).

    Exceptions of the `expected` types are bad input for the user to fix (a config, a dataset, an
    image file), whose messages name what is wrong: they are reported as the one line
    `<prog>: error: <message>` (`[rank r] ` before the message under torchrun), without a
    traceback, and the code is 2.

    Used by every entry point so that no rank outlives a failure: the failed rank leaves at once
    (`os._exit`, because tearing down a process group whose peers sit in a collective can block),
    its peers' next collective then fails (gloo: the connection closes; NCCL: the watchdog or the
    `timeout_s` of `init_distributed`) and they leave through here too; `torchrun` also stops the
    group when one worker exits non-zero.
    """
    try:
        return main()
    except SystemExit as e:
        if e.code in (0, None):
            raise
        # whoever exits with a code said why (argparse prints its usage error): no traceback
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(e.code if isinstance(e.code, int) else 1)
    except expected as e:
        rank = f"[rank {os.environ['RANK']}] " if "RANK" in os.environ else ""
        message = f"{prog}: error: {rank}{e}\n"
    except BaseException as e:  # noqa: BLE001 - any failure, KeyboardInterrupt included, ends the run
        if _env_int("WORLD_SIZE", 1) > 1 and _peer_gone(e):
            # the rank that failed said why; this one only lost its peers in a collective
            rank = os.environ.get("RANK", "0")
            sys.stdout.flush()
            sys.stderr.write(f"[rank {rank}] {prog}: stopped: another rank failed\n")
            sys.stderr.flush()
            os._exit(1)
        _report(e, prog)
        os._exit(1)
    # Bad input, reported outside the `except` block: the exception and the frames its traceback
    # holds (with any DataLoader iterator in them) are freed by now, so a single process exits
    # normally and its DataLoader workers are shut down with it instead of lingering (holding
    # stdout/stderr) until they notice the parent is gone. Under torchrun, leave at once as above.
    sys.stdout.flush()
    sys.stderr.write(message)
    sys.stderr.flush()
    if _env_int("WORLD_SIZE", 1) > 1:
        os._exit(2)
    raise SystemExit(2)


#: what a collective raises when a peer process is gone (gloo's socket errors included)
_PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "aborted")


def _peer_gone(e: BaseException) -> bool:
    """Whether `e` is a collective failing because another rank left."""
    if isinstance(e, dist.DistError):
        return True
    return isinstance(e, RuntimeError) and any(s in str(e) for s in _PEER_GONE)


def _report(e: BaseException, prog: str) -> None:
    rank = os.environ.get("RANK", "0")
    sys.stdout.flush()
    sys.stderr.write(f"[rank {rank}] {prog} failed:\n{''.join(traceback.format_exception(e))}")
    sys.stderr.flush()
