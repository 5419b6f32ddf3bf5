"""resdet.benchmarks.timing against a fake clock: warm-up calls are not timed, each timed call is
the clock's advance over it, medians of odd and even counts, and the interleaving order."""

from __future__ import annotations

import mmap
from pathlib import Path

import pytest

from resdet.benchmarks import timing


class FakeClock:
    """A clock that stands still except when a step advances it by its next duration."""

    def __init__(self, durations: list[float]) -> None:
        self.now, self.durations, self.calls = 100.0, list(durations), 0

    def __call__(self) -> float:
        return self.now

    def step(self) -> int:
        self.now += self.durations.pop(0)
        self.calls += 1
        return self.calls


def test_warm_up_calls_are_run_but_not_timed():
    clock = FakeClock([50.0, 30.0, 3.0, 1.0, 2.0])
    times = timing.time_iterations(clock.step, 3, warmup=2, clock=clock)
    assert clock.calls == 5
    assert times == [3.0, 1.0, 2.0]
    assert timing.median(times) == 2.0
    assert timing.median([3.0, 1.0, 2.0, 8.0]) == 2.5  # the middle two's mean


def test_total_of_back_to_back_calls_after_warm_up():
    clock = FakeClock([10.0, 0.5, 0.25, 0.25])
    seconds, returned = timing.time_total(clock.step, 3, warmup=1, clock=clock)
    assert seconds == 1.0 and returned == [2, 3, 4]


def test_timed_measures_one_call_in_wall_and_cpu_time():
    clock, cpu = FakeClock([4.0]), FakeClock([])
    t = timing.timed(clock.step, clock=clock, cpu_clock=cpu)
    assert (t.wall_s, t.cpu_s) == (4.0, 0.0)


def test_interleaved_warms_each_up_then_alternates():
    log: list[str] = []

    def step(name: str) -> int:
        log.append(name)
        return len(log)

    out = timing.interleaved(
        {"a": lambda: step("a"), "b": lambda: step("b")}, 2, warmup=2, progress=log.append
    )
    assert log == [
        *("a", "a", "warmed up a", "b", "b", "warmed up b"),
        *("a", "b", "round 1/2", "a", "b", "round 2/2"),
    ]
    # only the timed rounds are returned: the calls that logged entries 7, 8, 10 and 11
    assert out == {"a": [7, 10], "b": [8, 11]}


def _resident(mib: int) -> mmap.mmap:
    """`mib` MiB of fresh anonymous pages, each touched (resident whatever the allocator caches)."""
    buf = mmap.mmap(-1, mib * 2**20)
    for i in range(0, len(buf), mmap.PAGESIZE):
        buf[i] = 1
    return buf


@pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="the peak RSS is reset through /proc"
)
def test_cpu_peak_is_reset_and_follows_a_new_allocation():
    big = _resident(256)
    before = timing.peak_memory_mb("cpu")
    big.close()
    timing.reset_peak_memory("cpu")
    reset = timing.peak_memory_mb("cpu")
    assert reset < before - 128  # the released 256 MiB are no longer the peak
    small = _resident(64)
    assert timing.peak_memory_mb("cpu") - reset > 48
    small.close()
