"""The harness's handle on its subscriber processes: start, poll, collect, stop.

Two pools answer the same calls: `SubscriberPool` (Python processes, this
module) and `GoSubscriberPool` (one Go process, bench/go_subscribers.py).
`choose` and `make` pick between them.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import pathlib
from multiprocessing.connection import Connection
from typing import Any

from bench import subscribers
from bench.go_subscribers import GoSubscriberPool
from bench.meter import Meter

_START_TIMEOUT = 90.0
_REPLY_TIMEOUT = 60.0


def split(n: int, parts: int) -> list[int]:
    """n streams over `parts` processes, as even as possible, none empty."""
    parts = max(1, min(parts, n))
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


class SubscriberPool:
    """N streams spread over a few spawned processes, each with a few channels."""

    kind = "python"

    def __init__(
        self,
        address: str,
        n: int,
        processes: int,
        channels: int,
        batched: bool = False,
        open_rate: float = 0.0,
    ) -> None:
        self._address = address
        self._batched = batched
        self._open_rate = open_rate
        self._sizes = split(n, processes)
        self._channels = channels
        self._procs: list[multiprocessing.process.BaseProcess] = []
        self._conns: list[Connection] = []
        self.meter: Meter | None = None

    async def start(self) -> None:
        """Spawn the processes and wait until every stream is live on the server."""
        # spawn, not fork: the harness already runs grpc, which does not survive a fork.
        ctx = multiprocessing.get_context("spawn")
        for size in self._sizes:
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(
                target=subscribers.main,
                args=(
                    subscribers.Plan(
                        self._address,
                        size,
                        self._channels,
                        self._batched,
                        self._open_rate / len(self._sizes),
                    ),
                    theirs,
                ),
                daemon=True,
            )
            proc.start()
            theirs.close()
            self._procs.append(proc)
            self._conns.append(mine)
        pids = []
        for conn in self._conns:
            status, pid = await self._recv(conn, _START_TIMEOUT)
            if status != "ready":
                raise RuntimeError(f"subscriber process failed to start: {status}")
            pids.append(pid)
        self.meter = Meter(*pids)

    async def _recv(self, conn: Connection, wait_s: float = _REPLY_TIMEOUT) -> Any:
        def wait() -> Any:
            if not conn.poll(wait_s):
                raise TimeoutError("subscriber process did not answer")
            return conn.recv()

        return await asyncio.to_thread(wait)

    async def ask(self, command: str) -> list[Any]:
        """Send `command` to every process; their replies, in process order."""
        for conn in self._conns:
            conn.send(command)
        return [await self._recv(conn) for conn in self._conns]

    async def received(self) -> tuple[int, int, int]:
        """Messages recorded since the last take, lagged and disconnected streams, summed."""
        counts = await self.ask("count")
        return (
            sum(c[0] for c in counts),
            sum(c[1] for c in counts),
            sum(c[2] for c in counts),
        )

    async def take(self) -> list[subscribers.Taken]:
        """Every process's records since the previous take."""
        return await self.ask("take")

    async def open_slow(self) -> None:
        """Open the stalled stream (in the first process, on its own connection)."""
        self._conns[0].send("open_slow")
        await self._recv(self._conns[0])

    async def drain_slow(self) -> tuple[int, str]:
        """Read the stalled stream out: (messages it had been sent, its final status)."""
        self._conns[0].send("drain_slow")
        return await self._recv(self._conns[0])

    async def stop(self) -> None:
        """Ask every process to exit; kill the ones that do not."""
        for conn in self._conns:
            try:
                conn.send("stop")
                await self._recv(conn, 10.0)
            except (OSError, EOFError, TimeoutError):
                pass
        for proc in self._procs:
            await asyncio.to_thread(proc.join, 10.0)
            if proc.is_alive():
                proc.kill()
                await asyncio.to_thread(proc.join)


Pool = SubscriberPool | GoSubscriberPool
GO_FROM = 100  # `--pool auto` holds this many streams or more in Go
# Streams opened per second, whole pool. Thousands opened at once made both
# Python gRPC servers end streams with CANCELLED, over and over as they
# resubscribed (seen from ~3 000 at once; at 2 000/s, 10 000 open cleanly).
# Sidecars arrive over time; the storm after a restart is another experiment.
OPEN_RATE = 2000.0


def choose(requested: str, n: int, go_available: bool) -> str:
    """Which pool holds N streams: `go` or `python`, as asked or, for `auto`, by N."""
    if requested != "auto":
        return requested
    return "go" if n >= GO_FROM and go_available else "python"


def make(
    kind: str,
    address: str,
    n: int,
    processes: int,
    channels: int,
    batched: bool,
    go_binary: pathlib.Path | None,
) -> Pool:
    """A pool of `kind` holding N streams over the same number of connections either way."""
    if kind == "python":
        return SubscriberPool(address, n, processes, channels, batched, OPEN_RATE)
    if go_binary is None:
        raise RuntimeError("the Go subscriber pool is not built")
    return GoSubscriberPool(go_binary, address, n, processes * channels, batched, OPEN_RATE)
