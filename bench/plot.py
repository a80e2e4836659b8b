"""plot.png: latency and throughput against subscribers, Rigger beside the ceilings."""

from __future__ import annotations

import pathlib
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: CI and headless runs
import matplotlib.pyplot as plt

from bench import matrix
from bench.servers import LABELS

_LINE = {matrix.RIGGER: "-", matrix.AIO: "--", matrix.TONIC: "-.", matrix.TARGET: "-"}
_COLOUR = {
    matrix.RIGGER: "tab:blue",
    matrix.AIO: "tab:orange",
    matrix.TONIC: "tab:green",
    matrix.TARGET: "tab:blue",
}
_SATURATION = ("sat", matrix.probe_cell(1.0).rate_label)

Series = tuple[str, int, str, int, str]  # kind, workers, stream, payload, rate


def _series(results: list[dict[str, Any]], rates: tuple[str, ...]) -> dict[Series, list[Any]]:
    """Every series that has at least one point at one of `rates`, its cells sorted by N."""
    found: dict[Series, list[Any]] = {}
    for c in results:
        if (
            c["rate"] in rates
            and not c["slow_subscriber"]
            and c["buffer"] == matrix.MATRIX_BUFFER  # the slow cell's group is not on the curve
        ):
            key = (
                c["kind"],
                c.get("workers", 1),
                c.get("stream", "plain"),
                c["payload_bytes"],
                c["rate"],
            )
            found.setdefault(key, []).append(c)
    return {k: sorted(v, key=lambda c: c["n"]) for k, v in sorted(found.items())}


def _label(key: Series, with_rate: bool) -> str:
    kind, workers, stream, payload, rate = key
    parts = [LABELS[kind]]
    if workers > 1:
        parts.append(f"{workers} workers")
    if stream != "plain":
        parts.append(stream)
    parts.append(f"{payload} B")
    if with_rate:
        parts.append(rate)
    return ", ".join(parts)


def _style(key: Series) -> dict[str, str]:
    """One colour per server, one line style per server, one marker per stream and writer."""
    kind, workers, stream, _, rate = key
    marker = "v" if stream == "batched" else "*" if rate.startswith("sat/") else "o"
    return {
        "linestyle": _LINE[kind] if workers == 1 else ":",
        "marker": marker,
        "color": "tab:purple" if workers > 1 else _COLOUR[kind],
    }


def write(path: pathlib.Path, results: list[dict[str, Any]]) -> None:
    """Three panels: p99 latency at a fixed rate, saturation throughput, CPU per delivery.

    Only series with points appear (a legend of empty series says nothing),
    and a series of one point, such as quick mode's batched cell, is drawn as
    a marker.
    """
    # 10 events/s is the rate every N can sustain here; higher rates at N=1000 only
    # show queueing. Quick mode has no 10, so it falls back to 100.
    rates = [r for r in ("10", "100", "1000") if any(c["rate"] == r for c in results)]
    latency_rate = rates[0] if rates else None
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2))
    lat, thr, cpu = axes
    if latency_rate:
        for key, cells in _series(results, (latency_rate,)).items():
            points = [(c["n"], c["latency_ms"]["p99"]) for c in cells if c["latency_ms"]["p99"]]
            if points:
                lat.plot(*zip(*points, strict=True), **_style(key), label=_label(key, False))
    for key, cells in _series(results, _SATURATION).items():
        points = [(c["n"], c["delivered_per_s"]) for c in cells if c["delivered_per_s"]]
        if points:
            thr.plot(*zip(*points, strict=True), **_style(key), label=_label(key, True))
        points = [
            (c["n"], c["server_cpu_us_per_delivery"])
            for c in cells
            if c["server_cpu_us_per_delivery"]
        ]
        if points:
            cpu.plot(*zip(*points, strict=True), **_style(key), label=_label(key, True))
    lat.set_title(f"p99 stamp→receive at {latency_rate} events/s")
    lat.set_ylabel("ms")
    thr.set_title("saturation: deliveries/s (all subscribers)")
    thr.set_ylabel("deliveries/s")
    cpu.set_title("saturation: server CPU per delivery")
    cpu.set_ylabel("µs")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("subscribers (N)")
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
