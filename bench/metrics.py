"""From raw receive records to one cell's figures: throughput, latency, spread."""

from __future__ import annotations

import datetime as dt
import re
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


_FRACTION = re.compile(r"(\.\d{6})\d+")


def _realtime_ns(rfc3339: str) -> int | None:
    """An RFC 3339 timestamp in ns since the epoch; None if a server sent something else."""
    try:
        # Other servers (--target) may send nanoseconds; datetime holds microseconds.
        moment = dt.datetime.fromisoformat(_FRACTION.sub(r"\1", rfc3339))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
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
            if stamp not in server_ts and (ns := _realtime_ns(text)) is not None:
                server_ts[stamp] = ns

    order = np.argsort(stamps, kind="stable")
    stamps, received, received_wall = stamps[order], received[order], received_wall[order]
    starts = np.concatenate(([0], np.flatnonzero(np.diff(stamps)) + 1))
    counts = np.diff(np.concatenate((starts, [stamps.size])))
    first = np.minimum.reduceat(received, starts)
    last = np.maximum.reduceat(received, starts)
    unique = stamps[starts]
    # -1 where the server's timestamp is unknown; those deliveries are left out below.
    event_ts = np.repeat(
        np.array([server_ts.get(int(s), -1) for s in unique], dtype=np.int64), counts
    )
    window_ns = int(received.max() - stamps.min())
    return {
        "deliveries": int(stamps.size),
        "events_seen": int(unique.size),
        "delivered_per_s": round(stamps.size / (window_ns / 1e9), 1) if window_ns > 0 else 0.0,
        "latency_ms": _ms(received - stamps),
        "server_ts_latency_ms": _ms((received_wall - event_ts)[event_ts >= 0]),
        "spread_ms": _ms((last - first)[counts > 1]),
    }


def acks(ack_ns: Sequence[int]) -> dict[str, float | None]:
    """Write call durations (stamp to reply), in ms."""
    return _ms(np.asarray(ack_ns, dtype=np.int64))
