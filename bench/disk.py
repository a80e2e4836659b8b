"""How long the disk under the database takes to make a small write durable.

Rigger commits with synchronous=FULL, so every acknowledged write waits for an
fsync; on a shared VM disk that wait swings from a fraction of a millisecond to
tens of milliseconds. Probing it next to each group lets the report tell disk
noise from server cost.
"""

from __future__ import annotations

import os
import pathlib
import time

import numpy as np


def fsync_probe(directory: pathlib.Path, count: int = 100) -> dict[str, float]:
    """p50/p99/max in ms of `count` 4 KiB append+fdatasync cycles on a scratch file."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "fsync-probe"
    block = b"\0" * 4096
    samples = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for _ in range(count):
            started = time.perf_counter_ns()
            os.write(fd, block)
            os.fdatasync(fd)
            samples.append(time.perf_counter_ns() - started)
    finally:
        os.close(fd)
        path.unlink()
    p50, p99 = np.percentile(samples, [50, 99])
    return {
        "p50": round(float(p50) / 1e6, 3),
        "p99": round(float(p99) / 1e6, 3),
        "max": round(max(samples) / 1e6, 3),
    }
