"""The timing harness every benchmark shares: device sync, timed calls, warm-up, medians, peak
memory and the interleaving of candidates.

A timed call runs between two device syncs (a no-op on CPU), so queued GPU work is counted in the
call that queued it. Warm-up calls run the same way but are not returned. Peak memory is CUDA
max-allocated on GPU and the process's peak resident set (VmHWM) on CPU.

    times = time_iterations(step, iters=5, warmup=2, device="cuda")  # per-iteration seconds
    print(f"{1000 * median(times):.1f} ms")
"""

from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, TypeVar

import torch

T = TypeVar("T")

Device = str | torch.device
Clock = Callable[[], float]


def sync(device: Device) -> None:
    """Wait for the work queued on `device` (CUDA); nothing to wait for elsewhere."""
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def reset_peak_memory(device: Device) -> None:
    """Start a new peak for `peak_memory_mb`: CUDA's max-allocated, or the process's VmHWM on CPU
    (Linux >= 4.0; elsewhere the peak keeps the whole process's history)."""
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    else:
        with contextlib.suppress(OSError):  # "5" resets VmHWM
            Path("/proc/self/clear_refs").write_text("5")


def peak_memory_mb(device: Device) -> float:
    """MiB at the peak since `reset_peak_memory`: CUDA max-allocated, or the process's peak
    resident set on CPU (VmHWM; the rusage maximum where /proc is not there)."""
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass(frozen=True)
class Timed:
    """One timed call: wall seconds, and the process's CPU seconds (all threads) over the same
    span, which other processes on a shared machine disturb less."""

    wall_s: float
    cpu_s: float


def timed(
    fn: Callable[[], object],
    device: Device = "cpu",
    *,
    reset_peak: bool = False,
    clock: Clock = time.perf_counter,
    cpu_clock: Clock = time.process_time,
) -> Timed:
    """Run `fn` once between device syncs and time it; with `reset_peak` the memory peak is reset
    after the first sync, so that `peak_memory_mb` reads this call's peak."""
    sync(device)
    if reset_peak:
        reset_peak_memory(device)
    c0, t0 = cpu_clock(), clock()
    fn()
    sync(device)
    return Timed(clock() - t0, cpu_clock() - c0)


def time_iterations(
    step: Callable[[], object],
    iters: int,
    *,
    warmup: int = 0,
    device: Device = "cpu",
    clock: Clock = time.perf_counter,
) -> list[float]:
    """Call `step` `warmup` times, then `iters` times each timed on its own (`timed`): the wall
    seconds of the `iters` timed calls, in order."""
    for _ in range(warmup):
        step()
    return [timed(step, device, clock=clock).wall_s for _ in range(iters)]


def time_total(
    step: Callable[[], T],
    iters: int,
    *,
    warmup: int = 0,
    device: Device = "cpu",
    clock: Clock = time.perf_counter,
) -> tuple[float, list[T]]:
    """Call `step` `warmup` times, then `iters` times back to back, synced only before the first
    and after the last (work that overlaps from one call into the next counts once, as in a
    pipeline): (wall seconds of the `iters` calls, what they returned)."""
    for _ in range(warmup):
        step()
    out: list[T] = []

    def run() -> None:
        out.extend(step() for _ in range(iters))

    return timed(run, device, clock=clock).wall_s, out


def median(values: Iterable[float]) -> float:
    """The median (the mean of the middle two for an even count)."""
    return statistics.median(values)


def interleaved(
    steps: Mapping[str, Callable[[], T]],
    rounds: int,
    *,
    warmup: int = 0,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, list[T]]:
    """Warm up each candidate in turn (`warmup` calls, then `progress("warmed up <name>")`), then
    `rounds` rounds of one call per candidate in the mapping's order (then `progress("round i/n")`):
    what each candidate's timed calls returned, by name.

    Interleaving puts every candidate under the same thermal, cache and background-load conditions,
    so a ratio of two candidates' calls in one round compares runs made under the same load.
    """
    for name, step in steps.items():
        for _ in range(warmup):
            step()
        progress(f"warmed up {name}")
    out: dict[str, list[T]] = {name: [] for name in steps}
    for i in range(rounds):
        for name, step in steps.items():
            out[name].append(step())
        progress(f"round {i + 1}/{rounds}")
    return out
