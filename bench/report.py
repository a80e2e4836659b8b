"""The report: report.json (one object per cell, with its ceiling and ratio), report.md."""

from __future__ import annotations

import json
import pathlib
from typing import Any

Cell = dict[str, Any]

_KEY_FIELDS = ("n", "rate", "payload_bytes", "slow_subscriber", "buffer")
# Within noise: p99 of the other subscribers moves by at most this much, in ms or
# as a fraction of the baseline, whichever is larger.
_NOISE_MS, _NOISE_FRACTION = 1.0, 0.5


def _key(cell: Cell) -> tuple[Any, ...]:
    return tuple(cell[f] for f in _KEY_FIELDS)


def _variant(cell: Cell) -> str:
    """How this cell's server differed from the default: stream and worker processes."""
    parts = []
    if cell.get("stream") == "batched":
        parts.append("batched stream")
    if cell.get("workers", 1) > 1:
        parts.append(f"{cell['workers']} workers")
    return f" ({', '.join(parts)})" if parts else ""


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def pair(results: list[Cell]) -> list[Cell]:
    """Rigger's cells, each with the matching ceiling cell and Rigger/ceiling ratios."""
    ceilings = {_key(c): c for c in results if c["kind"] == "ceiling"}
    cells = []
    for cell in results:
        if cell["kind"] != "rigger":
            continue
        ceiling = ceilings.get(_key(cell))
        ratio = None
        if ceiling is not None:
            ratio = {
                "delivered_per_s": _ratio(cell["delivered_per_s"], ceiling["delivered_per_s"]),
                "latency_p99": _ratio(cell["latency_ms"]["p99"], ceiling["latency_ms"]["p99"]),
                "server_cpu_us_per_delivery": _ratio(
                    cell["server_cpu_us_per_delivery"], ceiling["server_cpu_us_per_delivery"]
                ),
                "rss_per_idle_subscriber": _ratio(
                    cell["rss_per_idle_subscriber_kb"], ceiling["rss_per_idle_subscriber_kb"]
                ),
            }
        cells.append({**cell, "ceiling": ceiling, "ratio": ratio})
    return cells


def _find(cells: list[Cell], **match: Any) -> list[Cell]:
    return [c for c in cells if all(c.get(k) == v for k, v in match.items())]


def targets(cells: list[Cell]) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured figure and whether it was met."""
    checks: list[dict[str, Any]] = []
    for n in (100, 1000):
        for cell in _find(cells, n=n, rate="sat", slow_subscriber=False):
            ratio = (cell["ratio"] or {}).get("delivered_per_s")
            checks.append(
                {
                    "target": f"saturation throughput at N={n}, {cell['payload_bytes']} B"
                    + _variant(cell)
                    + " >= 80% of ceiling",
                    "measured": f"{ratio:.1%} ({cell['delivered_per_s']:.0f} vs "
                    f"{cell['ceiling']['delivered_per_s']:.0f} deliveries/s)"
                    if ratio is not None
                    else "no ceiling",
                    "met": ratio is not None and ratio >= 0.8,
                }
            )
    for cell in _find(cells, n=100, rate="100", slow_subscriber=False):
        if cell["ceiling"] is None:
            continue  # the slow group's baseline: reported with the slow cell
        p99 = cell["latency_ms"]["p99"]
        checks.append(
            {
                "target": f"p99 commit->receive at N=100, 100 ev/s, {cell['payload_bytes']} B"
                + _variant(cell)
                + " < 5 ms",
                "measured": f"{p99} ms (server timestamp->receive p99 "
                f"{cell['server_ts_latency_ms']['p99']} ms; ceiling "
                f"{cell['ceiling']['latency_ms']['p99']} ms; disk fsync p50/p99 "
                f"{cell['disk_fsync_ms']['p50']}/{cell['disk_fsync_ms']['p99']} ms)",
                "met": p99 is not None and p99 < 5.0,
            }
        )
    for cell in _find(cells, n=1000)[:1]:
        kb = cell["rss_per_idle_subscriber_kb"]
        checks.append(
            {
                "target": "1000 concurrent streams, RSS growth < 100 kB per subscriber",
                "measured": f"{kb} kB per subscriber ({cell['rss_before_subscribers_mb']} -> "
                f"{cell['rss_idle_subscribers_mb']} MB)",
                "met": kb < 100,
            }
        )
    slow = _find(cells, slow_subscriber=True)
    if slow:
        with_slow = slow[0]
        base = next(
            c
            for c in cells
            if not c["slow_subscriber"]
            and c["buffer"] == with_slow["buffer"]
            and c["n"] == with_slow["n"]
            and c["rate"] == with_slow["rate"]
            and c["payload_bytes"] == with_slow["payload_bytes"]
        )
        b99, s99 = base["latency_ms"]["p99"], with_slow["latency_ms"]["p99"]
        allowed = max(_NOISE_MS, _NOISE_FRACTION * b99)
        stalled_lagged = with_slow["slow"]["status"] == "RESOURCE_EXHAUSTED"
        others_lagged = with_slow["lagged"] - (1 if stalled_lagged else 0)
        checks.append(
            {
                "target": "a subscriber that stops reading leaves the others' p99 unchanged "
                f"(within noise: at most max({_NOISE_MS} ms, {_NOISE_FRACTION:.0%}) higher)",
                "measured": f"others' p99 {b99} ms without, {s99} ms with; the stalled stream "
                f"ended {with_slow['slow']['status']} after "
                f"{with_slow['slow']['messages_before_end']} messages; "
                f"others lagged: {others_lagged}",
                "met": s99 - b99 <= allowed,  # only a rise is harm; a drop is noise
            }
        )
    return checks


def _met(met: bool) -> str:
    return "yes" if met else "**no**"


def _f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def markdown(cells: list[Cell], checks: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The report as markdown tables."""
    lines = [
        "# Rigger fanout benchmark",
        "",
        f"Mode: {meta['mode']}; wall time {meta['wall_seconds']:.0f} s; {meta['machine']}.",
        "Latency is from the writer's stamp just before the call to the subscriber's receive"
        " (CLOCK_MONOTONIC, same host); `srv p99` is from the server's event timestamp"
        " (taken before the commit) to receive. Ratios are Rigger / ceiling.",
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---|---|",
        *(f"| {c['target']} | {c['measured']} | {_met(c['met'])} |" for c in checks),
        "",
        "## Cells",
        "",
        "| N | rate ev/s | payload B | delivered/s | ceiling /s | ratio | p50 ms | p99 ms"
        " | max ms | srv p99 ms | ceiling p99 ms | spread p99 ms | CPU µs/delivery"
        " | ceiling CPU µs | RSS kB/idle sub | lagged | disconnected | fsync p50/p99 ms"
        " | other cores |",
        "|" + "---:|" * 19,
    ]
    for c in cells:
        ceiling = c["ceiling"] or {}
        ratio = c["ratio"] or {}
        rate = c["rate"] + (" +slow" if c["slow_subscriber"] else "")
        lines.append(
            "| "
            + " | ".join(
                [
                    _f(c["n"]) + _variant(c),
                    rate,
                    _f(c["payload_bytes"]),
                    _f(c["delivered_per_s"], 0),
                    _f(ceiling.get("delivered_per_s"), 0),
                    _f(ratio.get("delivered_per_s"), 2),
                    _f(c["latency_ms"]["p50"], 2),
                    _f(c["latency_ms"]["p99"], 2),
                    _f(c["latency_ms"]["max"], 2),
                    _f(c["server_ts_latency_ms"]["p99"], 2),
                    _f((ceiling.get("latency_ms") or {}).get("p99"), 2),
                    _f(c["spread_ms"]["p99"], 2),
                    _f(c["server_cpu_us_per_delivery"], 1),
                    _f(ceiling.get("server_cpu_us_per_delivery"), 1),
                    _f(c["rss_per_idle_subscriber_kb"], 1),
                    _f(c["lagged"]),
                    _f(c["disconnected"]),
                    f"{c['disk_fsync_ms']['p50']}/{c['disk_fsync_ms']['p99']}",
                    _f(c["other_cores"], 2),
                ]
            )
            + " |"
        )
    lines += [
        "",
        "Delivered/s counts every message received by every subscriber. `sat` = "
        f"{meta['saturation_writers']} concurrent closed-loop writers. Cells whose offered"
        " load (rate x N) is beyond the machine show queueing in their latency; see"
        " report.json for events written, acks, and the CPU cores used by server,"
        " subscribers and writer. `other cores`: CPU used during the cell by everything"
        " else on the machine (other jobs, kernel); well above ~0.2 means a disturbed cell.",
        "",
    ]
    return "\n".join(lines)


def write(out: pathlib.Path, results: list[Cell], meta: dict[str, Any]) -> list[Cell]:
    """Write report.json and report.md into `out`; returns the paired cells."""
    cells = pair(results)
    checks = targets(cells)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(
        json.dumps({"meta": meta, "targets": checks, "cells": cells}, indent=2) + "\n"
    )
    (out / "report.md").write_text(markdown(cells, checks, meta))
    return cells
