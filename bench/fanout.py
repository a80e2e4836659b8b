"""The asyncio fanout harness: one server, N subscriber streams in other processes, a writer.

For each group of the matrix it starts a fresh server, measures its RSS before
and after N idle streams are opened, then runs the group's cells on the same
streams: write (paced or saturating), wait until delivery goes quiet, and turn
the subscribers' receive records and the server's CPU time into figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pathlib
import time
from typing import Any

import grpc

from bench import disk, matrix, metrics, profiler, servers
from bench.meter import MachineMeter, Meter, cores_used
from bench.subscriber_pool import SubscriberPool
from bench.writer import Writer, WriteStats

log = logging.getLogger(__name__)

_SETTLE = 1.0  # seconds for the server's memory to settle before an RSS reading
_QUIET = 1.0  # no new delivery for this long ends the drain
_MAX_DRAIN = 20.0  # ... and so does this, whatever is still queued


async def _drain(pool: SubscriberPool, expected: int) -> None:
    """Wait until every expected delivery arrived, or delivery stopped, or time ran out."""
    deadline = time.monotonic() + _MAX_DRAIN
    last, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        count, _, _ = await pool.received()
        if count >= expected:
            return
        if count != last:
            last, quiet_since = count, time.monotonic()
        elif time.monotonic() - quiet_since > _QUIET:
            return
        await asyncio.sleep(0.05)


async def _write(writer: Writer, cell: matrix.Cell, max_events: int) -> WriteStats:
    if cell.rate == matrix.SATURATION:
        return await writer.saturate(
            matrix.SATURATION_WRITERS, cell.seconds, max_events, cell.payload
        )
    return await writer.paced(cell.rate, cell.seconds, max_events, cell.payload)


async def _run_cell(
    kind: str,
    group: matrix.Group,
    cell: matrix.Cell,
    writer: Writer,
    pool: SubscriberPool,
    server_meter: Meter,
) -> dict[str, Any]:
    assert pool.meter is not None
    await pool.take()  # drop anything left over from the previous cell
    if cell.slow:
        await pool.open_slow()
    max_events = max(1, group.max_deliveries // group.n)
    # The harness process is the writer; its CPU shows when the writer, not the
    # server, limited a saturation cell.
    writer_meter, machine_meter = Meter(os.getpid()), MachineMeter()
    server_before, client_before = server_meter.read(), pool.meter.read()
    writer_before, machine_before = writer_meter.read(), machine_meter.read()
    stats = await _write(writer, cell, max_events)
    writer_after = writer_meter.read()
    written = stats.sent - stats.failed
    await _drain(pool, written * group.n)
    server_after, client_after = server_meter.read(), pool.meter.read()
    machine_after = machine_meter.read()
    taken = await pool.take()
    figures = metrics.deliveries(taken)
    delivered = int(figures["deliveries"])  # type: ignore[call-overload]
    server_cpu = server_after.cpu_seconds - server_before.cpu_seconds
    result: dict[str, Any] = {
        "kind": kind,
        "stream": group.stream,
        "workers": group.workers_for(kind),
        "n": group.n,
        "rate": cell.rate_label,
        "payload_bytes": cell.payload,
        "slow_subscriber": cell.slow,
        "buffer": group.buffer,
        "write_seconds": round(stats.seconds, 3),
        "events_written": written,
        "write_failures": stats.failed,
        "offered_events_per_s": round(written / stats.seconds, 1) if stats.seconds else 0.0,
        "deliveries_expected": written * group.n,
        **figures,
        "ack_ms": metrics.acks(stats.ack_ns),
        "server_cpu_us_per_delivery": round(server_cpu * 1e6 / delivered, 2) if delivered else None,
        "server_cores": round(cores_used(server_before, server_after), 2),
        "client_cores": round(cores_used(client_before, client_after), 2),
        "writer_cores": round(cores_used(writer_before, writer_after), 2),
        # Everything else on the machine: other people's jobs, the kernel's
        # softirq work for loopback. High values mean a contaminated cell.
        "other_cores": round(
            cores_used(machine_before, machine_after)
            - cores_used(server_before, server_after)
            - cores_used(client_before, client_after)
            - cores_used(writer_before, writer_after),
            2,
        ),
        # Above 1 only for the batched stream: how many events a message carried.
        "events_per_message": round(delivered / messages, 2)
        if (messages := sum(t.messages for t in taken))
        else None,
        "lagged": sum(t.lagged for t in taken),
        "disconnected": sum(t.disconnected for t in taken),
    }
    if cell.slow:
        messages, status = await pool.drain_slow()
        result["slow"] = {"messages_before_end": messages, "status": status}
        if status == "RESOURCE_EXHAUSTED":
            result["lagged"] += 1
    log.info(
        "%s %s n=%d rate=%s payload=%d%s: %.0f deliveries/s, p99 %s ms, %s events/message, "
        "lagged %d",
        kind,
        group.stream + group.workers_suffix(kind),
        group.n,
        cell.rate_label,
        cell.payload,
        " +slow" if cell.slow else "",
        result["delivered_per_s"],
        result["latency_ms"]["p99"],
        result["events_per_message"],
        result["lagged"],
    )
    return result


async def _repeated(
    kind: str,
    group: matrix.Group,
    cell: matrix.Cell,
    writer: Writer,
    pool: SubscriberPool,
    server_meter: Meter,
) -> dict[str, Any]:
    runs = [
        await _run_cell(kind, group, cell, writer, pool, server_meter) for _ in range(cell.repeats)
    ]
    # Saturation reports its median-throughput run; paced cells their median-p99 run.
    if cell.rate == matrix.SATURATION:
        runs.sort(key=lambda r: r["delivered_per_s"])
    else:
        runs.sort(key=lambda r: r["latency_ms"]["p99"] or 0.0)
    chosen = runs[len(runs) // 2]
    if cell.repeats > 1:
        chosen["runs_delivered_per_s"] = [r["delivered_per_s"] for r in runs]
        chosen["runs_latency_p99_ms"] = [r["latency_ms"]["p99"] for r in runs]
    return chosen


async def run_group(
    kind: str,
    group: matrix.Group,
    workdir: pathlib.Path,
    profile_dir: pathlib.Path | None = None,
) -> list[dict[str, Any]]:
    """Run every cell of `group` against a fresh server of `kind`."""
    slow = "-slow" if any(c.slow for c in group.cells) else ""
    batched = "-batched" if group.batched else ""
    workers = group.workers_for(kind)
    name = f"{kind}-n{group.n}{slow}{batched}{group.workers_suffix(kind)}"
    fsync_ms = disk.fsync_probe(workdir / name)
    server = servers.start(kind, workdir / name, group.buffer, workers)
    pool: SubscriberPool | None = None
    try:
        assert server.proc is not None
        server_meter = Meter(server.proc.pid, children=True)
        spy: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
        if profile_dir is not None and kind == "rigger":
            spy = profiler.PySpy(
                server.proc.pid, profile_dir / f"{name}.raw", subprocesses=workers > 1
            )
        async with grpc.aio.insecure_channel(server.address) as channel:
            writer = Writer(channel)
            await writer.prepare()  # also warms the server's code paths and caches
            await asyncio.sleep(_SETTLE)
            rss_before = server_meter.rss()
            pool = SubscriberPool(
                server.address, group.n, group.processes, group.channels, group.batched
            )
            await pool.start()
            await asyncio.sleep(_SETTLE)
            rss_idle = server_meter.rss()
            per_sub_kb = round((rss_idle - rss_before) / group.n / 1024, 1)
            results = []
            with spy:
                for cell in group.cells:
                    results.append(await _repeated(kind, group, cell, writer, pool, server_meter))
            for result in results:
                result["rss_before_subscribers_mb"] = round(rss_before / 2**20, 1)
                result["rss_idle_subscribers_mb"] = round(rss_idle / 2**20, 1)
                result["rss_per_idle_subscriber_kb"] = per_sub_kb
                result["disk_fsync_ms"] = fsync_ms
            return results
    finally:
        if pool is not None:
            await pool.stop()
        server.stop()


_QUIET_CORES = 0.3  # machine-wide busy cores below which the machine counts as quiet


async def wait_quiet(max_wait: float) -> float:
    """Wait (at most `max_wait` s) until the rest of the machine is idle; returns busy cores.

    Between groups nothing of ours runs, so whatever keeps the machine busy is
    someone else's job, and a cell measured beside it says little.
    """
    meter = MachineMeter()
    deadline = time.monotonic() + max_wait
    while True:
        before = meter.read()
        await asyncio.sleep(1.0)
        busy = cores_used(before, meter.read())
        if busy < _QUIET_CORES or time.monotonic() >= deadline:
            return round(busy, 2)
        log.info("machine busy (%.2f cores of other work); waiting", busy)


async def run(
    groups: list[matrix.Group],
    workdir: pathlib.Path,
    profile_dir: pathlib.Path | None = None,
    quiet_wait: float = 0.0,
) -> list[dict[str, Any]]:
    """Every group, for each of its server kinds, one after another."""
    results: list[dict[str, Any]] = []
    for group in groups:
        for kind in group.kinds:
            busy = await wait_quiet(quiet_wait) if quiet_wait > 0 else None
            cells = await run_group(kind, group, workdir, profile_dir)
            for cell in cells:
                cell["busy_cores_before_group"] = busy
            results.extend(cells)
    return results
