"""CPU and memory of a process, read with psutil from outside it."""

from __future__ import annotations

import dataclasses
import time

import psutil


@dataclasses.dataclass(frozen=True, slots=True)
class Reading:
    """One look at a set of processes."""

    cpu_seconds: float  # user + system, all threads, since each process started
    wall_ns: int


class Meter:
    """CPU time (user + system over all threads) and RSS of one or more pids.

    With `children`, each pid's child processes count too (the workers of
    `rig grpc --workers N`); they are looked up afresh on every reading.
    """

    def __init__(self, *pids: int, children: bool = False) -> None:
        self._roots = [psutil.Process(pid) for pid in pids]
        self._children = children

    def _procs(self) -> list[psutil.Process]:
        if not self._children:
            return self._roots
        return [*self._roots, *(c for r in self._roots for c in r.children(recursive=True))]

    def read(self) -> Reading:
        cpu = 0.0
        for proc in self._procs():
            times = proc.cpu_times()
            cpu += times.user + times.system
        return Reading(cpu, time.monotonic_ns())

    def rss(self) -> int:
        """Resident set size in bytes, summed."""
        return sum(proc.memory_info().rss for proc in self._procs())


class MachineMeter:
    """CPU busy time of the whole machine (all cores, all processes)."""

    def read(self) -> Reading:
        times = psutil.cpu_times()
        idle = times.idle + getattr(times, "iowait", 0.0)
        return Reading(sum(times) - idle, time.monotonic_ns())


def cores_used(before: Reading, after: Reading) -> float:
    """Average number of cores busy between two readings."""
    wall = (after.wall_ns - before.wall_ns) / 1e9
    return (after.cpu_seconds - before.cpu_seconds) / wall if wall > 0 else 0.0
