"""plot.png: latency and throughput against the number of subscribers, Rigger beside the ceiling."""

from __future__ import annotations

import pathlib
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: CI and headless runs
import matplotlib.pyplot as plt

from bench.matrix import MATRIX_BUFFER

_STYLE = {"rigger": "-o", "ceiling": "--s"}


def _series(
    results: list[dict[str, Any]], kind: str, workers: int, rate: str, payload: int
) -> list[Any]:
    return sorted(
        (
            c
            for c in results
            if c["kind"] == kind
            and c.get("workers", 1) == workers
            and c.get("stream", "plain") == "plain"
            and c["rate"] == rate
            and c["payload_bytes"] == payload
            and not c["slow_subscriber"]
            and c["buffer"] == MATRIX_BUFFER  # the slow cell's group is not on the curve
        ),
        key=lambda c: c["n"],
    )


def write(path: pathlib.Path, results: list[dict[str, Any]]) -> None:
    """Three panels: p99 latency at a fixed rate, saturation throughput, CPU per delivery."""
    payloads = sorted({c["payload_bytes"] for c in results})
    # 10 events/s is the rate every N can sustain here; higher rates at N=1000 only
    # show queueing. Quick mode has no 10, so it falls back to 100.
    rates = [r for r in ("10", "100", "1000") if any(c["rate"] == r for c in results)]
    latency_rate = rates[0] if rates else None
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    lat, thr, cpu = axes
    servers = sorted({(c["kind"], c.get("workers", 1)) for c in results})
    for kind, workers in servers:
        style = _STYLE[kind] if workers == 1 else ":^"
        for payload in payloads:
            label = f"{kind}{f', {workers} workers' if workers > 1 else ''} {payload} B"
            if latency_rate:
                cells = _series(results, kind, workers, latency_rate, payload)
                lat.plot(
                    [c["n"] for c in cells],
                    [c["latency_ms"]["p99"] for c in cells],
                    style,
                    label=label,
                )
            cells = _series(results, kind, workers, "sat", payload)
            ns = [c["n"] for c in cells]
            thr.plot(ns, [c["delivered_per_s"] for c in cells], style, label=label)
            cpu.plot(
                [c["n"] for c in cells],
                [c["server_cpu_us_per_delivery"] for c in cells],
                style,
                label=label,
            )
    lat.set_title(f"p99 stamp→receive at {latency_rate} events/s")
    lat.set_ylabel("ms")
    thr.set_title("saturation: deliveries/s (all subscribers)")
    thr.set_ylabel("deliveries/s")
    cpu.set_title("saturation: server CPU per delivery")
    cpu.set_ylabel("µs")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("subscribers (N)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    lat.set_yscale("log")
    thr.set_yscale("log")
    cpu.set_yscale("log")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
