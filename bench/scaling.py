"""Many servers on one event log: replicas on PostgreSQL beside one SQLite server, and how
fast an event written through one server reaches another server's subscribers.

`python -m bench --db postgresql` runs it. Every setup runs the same two cells
with the same Go subscriber pool and writer:

- **throughput**: 16 closed-loop AddTask writers, each on its own connection,
  spread over the servers; N=100 plain subscribers spread over them too.
  Writes/s is what the shared log takes (on PostgreSQL every write serializes
  on the one-row log head); delivered/s what the servers fan out together.
- **cross**: 100 writes/s through the first server, all subscribers on the
  second (SQLite: two independent `rig grpc` on one database file; PostgreSQL:
  two replicas): every event crosses from one server to the other, through
  the datagram or `NOTIFY` that tells the second server the log grew.

On one 2-core host this measures what replicas cost, not how they scale: they
share the cores, the disk and the PostgreSQL server. The report says so.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import pathlib
import subprocess
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import grpc

from bench import fanout, matrix
from bench.go_subscribers import GoSubscriberPool
from bench.meter import Meter
from bench.subscriber_pool import OPEN_RATE, split
from bench.subscribers import Taken
from bench.writer import Writer
from testkit.pgcluster import PgCluster
from testkit.serverproc import RIG, ServerProcess

log = logging.getLogger(__name__)

REPLICAS = (1, 2, 4)
N = 100
THROUGHPUT = matrix.Cell(matrix.SATURATION, matrix.PROBE, 10.0, own_connections=True)
CROSS = matrix.Cell(100.0, matrix.SMALL, 10.0)


class SpreadPool:
    """Subscriber streams spread over several servers: one Go pool per server."""

    kind = "go"

    def __init__(self, binary: pathlib.Path, addresses: Sequence[str], n: int) -> None:
        sizes = split(n, len(addresses))
        self._pools = [
            GoSubscriberPool(binary, address, size, max(1, size // 4), False, OPEN_RATE)
            for address, size in zip(addresses, sizes, strict=False)
        ]
        self.meter: Meter | None = None

    async def start(self) -> None:
        """Start every pool; the meter covers all of them."""
        for pool in self._pools:
            await pool.start()
        self.meter = Meter(*(pool.pid for pool in self._pools))

    async def received(self) -> tuple[int, int, int]:
        """Summed over the pools: messages, lagged and disconnected streams."""
        counts = [await pool.received() for pool in self._pools]
        return sum(c[0] for c in counts), sum(c[1] for c in counts), sum(c[2] for c in counts)

    async def take(self) -> list[Taken]:
        """Every pool's records since the previous take."""
        return [taken for pool in self._pools for taken in await pool.take()]

    async def stop(self) -> None:
        """Stop every pool."""
        for pool in self._pools:
            await pool.stop()

    async def open_slow(self) -> None:  # the pools' interface; no slow cell here
        raise NotImplementedError

    async def drain_slow(self) -> tuple[int, str]:
        raise NotImplementedError


@contextlib.contextmanager
def _servers(
    workdir: pathlib.Path, name: str, db: pathlib.Path | str, count: int
) -> Iterator[list[ServerProcess]]:
    """`count` servers on one database, each in a directory of its own."""
    servers = []
    try:
        for index in range(count):
            root = workdir / f"{name}-{index}"
            root.mkdir(parents=True, exist_ok=True)
            extra = ("--buffer", str(matrix.MATRIX_BUFFER))
            servers.append(ServerProcess(root, db=db, extra_args=extra).start())
        yield servers
    finally:
        for server in servers:
            server.stop()


def _sqlite(
    workdir: pathlib.Path, count: int
) -> contextlib.AbstractContextManager[list[ServerProcess]]:
    """`count` independent `rig grpc` on one SQLite file."""
    return _servers(workdir, "sqlite", workdir / "shared" / "tasks.db", count)


def _replicas(
    cluster: PgCluster, workdir: pathlib.Path, name: str, count: int
) -> contextlib.AbstractContextManager[list[ServerProcess]]:
    """`count` replicas on a fresh database of `cluster`."""
    url = cluster.create_database(name)
    init = subprocess.run([*RIG, "init", "--db", url], capture_output=True, text=True)
    if init.returncode != 0:
        raise SystemExit(f"rig init --db {url} failed:\n{init.stderr}")
    return _servers(workdir, name, url, count)


async def _cell(
    setup: str,
    servers: Sequence[ServerProcess],
    cell: matrix.Cell,
    writers: Sequence[str],
    subscribers: Sequence[str],
    go_pool: pathlib.Path,
) -> dict[str, Any]:
    group = matrix.Group((setup,), N, (cell,), max_deliveries=2_000_000)
    pool = SpreadPool(go_pool, subscribers, N)
    spread = itertools.islice(itertools.cycle(writers), matrix.SATURATION_WRITERS)
    own = [fanout.own_channel(address) for address in spread]
    meter = Meter(*(s.proc.pid for s in servers if s.proc), children=True)
    try:
        async with grpc.aio.insecure_channel(writers[0]) as channel:
            writer = Writer(channel, add_only=True)
            await writer.prepare()
            await pool.start()
            result = await fanout.run_cell(setup, group, cell, writer, own, pool, meter)
    finally:
        await pool.stop()
        for writer_channel in own:
            await writer_channel.close()
    result["setup"] = setup
    result["servers"] = len(servers)
    return result


async def _both_cells(
    setup: str, servers: Sequence[ServerProcess], go_pool: pathlib.Path
) -> AsyncIterator[dict[str, Any]]:
    addresses = [server.address for server in servers]
    yield await _cell(setup, servers, THROUGHPUT, addresses, addresses, go_pool)
    if len(servers) > 1:
        yield await _cell(setup, servers, CROSS, addresses[:1], addresses[1:2], go_pool)


async def run(workdir: pathlib.Path, go_pool: pathlib.Path) -> list[dict[str, Any]]:
    """Every setup: SQLite with one server and two, PostgreSQL with 1, 2 and 4 replicas."""
    results: list[dict[str, Any]] = []
    for count in (1, 2):
        with _sqlite(workdir / f"sqlite{count}", count) as servers:
            results += [r async for r in _both_cells(f"sqlite x{count}", servers, go_pool)]
    with PgCluster.temporary(durable=True) as cluster:
        for count in REPLICAS:
            name = f"bench_{count}"
            with _replicas(cluster, workdir, name, count) as servers:
                setup = f"postgresql x{count}"
                results += [r async for r in _both_cells(setup, servers, go_pool)]
    return results


def markdown(results: Sequence[dict[str, Any]]) -> str:
    """The scaling section of the report."""
    lines = [
        "## Many servers, one log (`--db postgresql`)",
        "",
        "One 2-core host: the servers, PostgreSQL and the subscribers share its",
        "cores and disk, so this is what replicas *cost*, not how they scale. N=100",
        "plain subscribers spread over the servers; `throughput`: 16 closed-loop",
        "AddTask writers spread over them; `cross`: 100 writes/s through the first",
        "server, every subscriber on the second. `server cores` counts the `rig`",
        "processes only, not PostgreSQL's.",
        "",
        "| setup | cell | writes/s | delivered/s | delivered | p50 ms | p99 ms | server cores |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        cell = "cross" if r["rate"] != THROUGHPUT.rate_label else "throughput"
        latency = r.get("latency_ms") or {}
        fraction = r.get("delivered_fraction")
        lines.append(
            f"| {r['setup']} | {cell} | {r['writes_per_s']:,.0f} | {r['delivered_per_s']:,.0f} | "
            f"{fraction:.1%} | {latency.get('p50')} | {latency.get('p99')} | "
            f"{r['server_cores']} |"
            if fraction is not None
            else f"| {r['setup']} | {cell} | - | - | - | - | - | - |"
        )
    return "\n".join(lines) + "\n"
