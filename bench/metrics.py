"""From raw receive records to one cell's figures: throughput, latency, spread."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np

from bench.subscribers import Taken


def _ms(values_ns: np.ndarray) -> dict[str, float | None]:
    if values_ns.size == 0:
        return {"p50": None, "p99": None, "max": None}
    p50, p99 = np.percentile(values_ns, [50, 99])
    return {
        "p50": round(float(p50) / 1e6, 3),
        "p99": round(float(p99) / 1e6, 3),
        "max": round(float(values_ns.max()) / 1e6, 3),
    }


def _realtime_ns(rfc3339: str) -> int:
    moment = dt.datetime.fromisoformat(rfc3339)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def deliveries(taken: Sequence[Taken]) -> dict[str, object]:
    """Throughput, stamp->receive latency, server-timestamp->receive latency and spread."""
    stamps = np.concatenate([np.frombuffer(t.stamps, dtype=np.int64) for t in taken])
    received = np.concatenate([np.frombuffer(t.received, dtype=np.int64) for t in taken])
    if stamps.size == 0:
        return {
            "deliveries": 0,
            "events_seen": 0,
            "delivered_per_s": 0.0,
            "latency_ms": _ms(stamps),
            "server_ts_latency_ms": _ms(stamps),
            "spread_ms": _ms(stamps),
        }
    # Receive times on the wall clock, per process, for comparing with the
    # server's RFC 3339 event timestamp (taken before the commit).
    received_wall = np.concatenate(
        [np.frombuffer(t.received, dtype=np.int64) + t.realtime_offset_ns for t in taken]
    )
    server_ts: dict[int, int] = {}
    for t in taken:
        for stamp, text in t.timestamps.items():
            server_ts.setdefault(stamp, _realtime_ns(text))

    order = np.argsort(stamps, kind="stable")
    stamps, received, received_wall = stamps[order], received[order], received_wall[order]
    starts = np.concatenate(([0], np.flatnonzero(np.diff(stamps)) + 1))
    counts = np.diff(np.concatenate((starts, [stamps.size])))
    first = np.minimum.reduceat(received, starts)
    last = np.maximum.reduceat(received, starts)
    unique = stamps[starts]
    event_ts = np.array([server_ts[int(s)] for s in unique], dtype=np.int64)
    window_ns = int(received.max() - stamps.min())
    return {
        "deliveries": int(stamps.size),
        "events_seen": int(unique.size),
        "delivered_per_s": round(stamps.size / (window_ns / 1e9), 1) if window_ns > 0 else 0.0,
        "latency_ms": _ms(received - stamps),
        "server_ts_latency_ms": _ms(received_wall - np.repeat(event_ts, counts)),
        "spread_ms": _ms((last - first)[counts > 1]),
    }


def acks(ack_ns: Sequence[int]) -> dict[str, float | None]:
    """Write call durations (stamp to reply), in ms."""
    return _ms(np.asarray(ack_ns, dtype=np.int64))
