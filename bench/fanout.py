"""The asyncio fanout harness: one server, N subscriber streams in other processes, a writer.

For each group of the matrix it starts a fresh server (or uses the `--target`),
measures its RSS before and after N idle streams are opened, then runs the
group's cells on the same streams: write (paced or saturating), wait until
delivery goes quiet, and turn the subscribers' receive records and the
server's CPU time into figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import pathlib
import time
from collections.abc import Sequence
from typing import Any

import grpc

from bench import disk, matrix, metrics, profiler, servers, subscriber_pool
from bench.meter import MachineMeter, Meter, Reading, cores_used
from bench.subscriber_pool import Pool
from bench.writer import Writer, WriteStats

log = logging.getLogger(__name__)

_SETTLE = 1.0  # seconds for the server's memory to settle before an RSS reading
_QUIET = 1.0  # no new delivery for this long ends the drain
_MAX_DRAIN = 20.0  # ... and so does this, whatever is still queued


@dataclasses.dataclass(frozen=True, slots=True)
class Instruments:
    """What the harness measures with: subscriber pool, helper binaries, target."""

    pool: str = "auto"  # auto (Go from N=100 when built), go, python
    go_pool: pathlib.Path | None = None
    tonic: pathlib.Path | None = None
    target: str | None = None  # HOST:PORT of a running server (`--target`)
    add_only: bool = False  # the writer calls AddTask only

    def pool_for(self, n: int) -> str:
        return subscriber_pool.choose(self.pool, n, self.go_pool is not None)


async def _drain(pool: Pool, expected: int) -> None:
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


async def _write(
    writer: Writer, cell: matrix.Cell, max_events: int, own: Sequence[grpc.aio.Channel]
) -> WriteStats:
    if cell.idle:
        stats = WriteStats(started_ns=time.monotonic_ns())
        await asyncio.sleep(cell.seconds)
        stats.ended_ns = time.monotonic_ns()
        return stats
    if cell.rate == matrix.SATURATION:
        return await writer.saturate(
            matrix.SATURATION_WRITERS,
            cell.seconds,
            max_events,
            cell.payload,
            own if cell.own_connections else (),
        )
    return await writer.paced(cell.rate, cell.seconds, max_events, cell.payload)


def _cores(before: Reading | None, after: Reading | None) -> float | None:
    return round(cores_used(before, after), 2) if before and after else None


def own_channel(address: str) -> grpc.aio.Channel:
    """A channel with a connection of its own (a local subchannel pool)."""
    return grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])


async def run_cell(
    kind: str,
    group: matrix.Group,
    cell: matrix.Cell,
    writer: Writer,
    own: Sequence[grpc.aio.Channel],
    pool: Pool,
    server_meter: Meter | None,
) -> dict[str, Any]:
    assert pool.meter is not None
    await pool.take()  # drop anything left over from the previous cell
    if cell.slow:
        await pool.open_slow()
    max_events = max(1, group.max_deliveries // group.n)
    # The harness process is the writer; its CPU shows when the writer, not the
    # server, limited a saturation cell.
    writer_meter, machine_meter = Meter(os.getpid()), MachineMeter()
    server_before = server_meter.read() if server_meter else None
    client_before = pool.meter.read()
    writer_before, machine_before = writer_meter.read(), machine_meter.read()
    stats = await _write(writer, cell, max_events, own)
    writer_after = writer_meter.read()
    written = stats.sent - stats.failed
    await _drain(pool, written * group.n)
    server_after = server_meter.read() if server_meter else None
    client_after = pool.meter.read()
    machine_after = machine_meter.read()
    taken = await pool.take()
    figures = metrics.deliveries(taken)
    delivered = int(figures["deliveries"])  # type: ignore[call-overload]
    server_cpu = (
        server_after.cpu_seconds - server_before.cpu_seconds
        if server_before and server_after
        else None
    )
    mine = [(client_before, client_after), (writer_before, writer_after)]
    if server_before and server_after:
        mine.append((server_before, server_after))
    result: dict[str, Any] = {
        "kind": kind,
        "stream": group.stream,
        "workers": group.workers_for(kind),
        "pool": pool.kind,
        "n": group.n,
        "rate": cell.rate_label,
        "payload_bytes": cell.payload,
        "slow_subscriber": cell.slow,
        "buffer": group.buffer,
        "write_seconds": round(stats.seconds, 3),
        "events_written": written,
        "write_failures": stats.failed,
        "writes_per_s": round(written / stats.seconds, 1) if stats.seconds else 0.0,
        "deliveries_expected": written * group.n,
        **figures,
        "delivered_fraction": round(delivered / (written * group.n), 4) if written else None,
        "ack_ms": metrics.acks(stats.ack_ns),
        "server_cpu_us_per_delivery": round(server_cpu * 1e6 / delivered, 2)
        if server_cpu is not None and delivered
        else None,
        # What holding the streams costs when nothing happens (keepalives, timers).
        "idle_cpu_us_per_stream_s": round(server_cpu * 1e6 / group.n / stats.seconds, 3)
        if server_cpu is not None and cell.idle and stats.seconds
        else None,
        "server_cores": _cores(server_before, server_after),
        "client_cores": _cores(client_before, client_after),
        "writer_cores": _cores(writer_before, writer_after),
        # Everything else on the machine: other people's jobs, the kernel's
        # softirq work for loopback (and, with --target, the target). High
        # values mean a contaminated cell.
        "other_cores": round(
            cores_used(machine_before, machine_after) - sum(cores_used(b, a) for b, a in mine), 2
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
        "%s %s n=%d rate=%s payload=%d%s (%s pool): %.0f deliveries/s (%s of expected), "
        "p99 %s ms, %s events/message, lagged %d",
        kind,
        group.stream + group.workers_suffix(kind),
        group.n,
        cell.rate_label,
        cell.payload,
        " +slow" if cell.slow else "",
        pool.kind,
        result["delivered_per_s"],
        f"{result['delivered_fraction']:.1%}" if result["delivered_fraction"] is not None else "-",
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
    own: Sequence[grpc.aio.Channel],
    pool: Pool,
    server_meter: Meter | None,
) -> dict[str, Any]:
    runs = [
        await run_cell(kind, group, cell, writer, own, pool, server_meter)
        for _ in range(cell.repeats)
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
    instruments: Instruments,
    profile_dir: pathlib.Path | None = None,
) -> list[dict[str, Any]]:
    """Run every cell of `group` against a fresh server of `kind` (or the target)."""
    slow = "-slow" if any(c.slow for c in group.cells) else ""
    batched = "-batched" if group.batched else ""
    workers = group.workers_for(kind)
    name = f"{kind}-n{group.n}{slow}{batched}{group.workers_suffix(kind)}"
    fsync_ms = disk.fsync_probe(workdir / name) if kind != matrix.TARGET else None
    server = servers.start(
        kind, workdir / name, group.buffer, workers, instruments.tonic, instruments.target
    )
    pool: Pool | None = None
    own: list[grpc.aio.Channel] = []
    try:
        server_meter = Meter(server.proc.pid, children=True) if server.proc else None
        spy: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
        if profile_dir is not None and kind == matrix.RIGGER and server.proc:
            spy = profiler.PySpy(
                server.proc.pid, profile_dir / f"{name}.raw", subprocesses=workers > 1
            )
        if any(c.own_connections for c in group.cells):
            own = [own_channel(server.address) for _ in range(matrix.SATURATION_WRITERS)]
        async with grpc.aio.insecure_channel(server.address) as channel:
            writer = Writer(channel, add_only=instruments.add_only)
            await writer.prepare()  # also warms the server's code paths and caches
            if kind == matrix.TARGET:
                await writer.check_title_update()
            await asyncio.sleep(_SETTLE)
            rss_before = server_meter.rss() if server_meter else None
            pool = subscriber_pool.make(
                instruments.pool_for(group.n),
                server.address,
                group.n,
                group.processes,
                group.channels,
                group.batched,
                instruments.go_pool,
            )
            await pool.start()
            await asyncio.sleep(_SETTLE)
            rss_idle = server_meter.rss() if server_meter else None
            per_sub_kb = (
                round((rss_idle - rss_before) / group.n / 1024, 1)
                if rss_idle is not None and rss_before is not None
                else None
            )
            results = []
            with spy:
                for cell in group.cells:
                    results.append(
                        await _repeated(kind, group, cell, writer, own, pool, server_meter)
                    )
            for result in results:
                result["rss_before_subscribers_mb"] = (
                    round(rss_before / 2**20, 1) if rss_before is not None else None
                )
                result["rss_idle_subscribers_mb"] = (
                    round(rss_idle / 2**20, 1) if rss_idle is not None else None
                )
                result["rss_per_idle_subscriber_kb"] = per_sub_kb
                result["disk_fsync_ms"] = fsync_ms
            return results
    finally:
        if pool is not None:
            await pool.stop()
        for channel in own:
            await channel.close()
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
    instruments: Instruments,
    profile_dir: pathlib.Path | None = None,
    quiet_wait: float = 0.0,
) -> list[dict[str, Any]]:
    """Every group, for each of its server kinds, one after another."""
    results: list[dict[str, Any]] = []
    for group in groups:
        for kind in group.kinds:
            busy = await wait_quiet(quiet_wait) if quiet_wait > 0 else None
            cells = await run_group(kind, group, workdir, instruments, profile_dir)
            for cell in cells:
                cell["busy_cores_before_group"] = busy
            results.extend(cells)
    return results
