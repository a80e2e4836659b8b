"""The harness's handle on the Go subscriber pool (bench/gopool): one process, N streams.

It answers the same questions as `SubscriberPool` with the same types, so the
harness cannot tell which pool it drives; the Go process records exactly what
`bench.subscribers.Recorder` records. It talks over the process's stdin and
stdout (see bench/gopool/main.go for the protocol).
"""

from __future__ import annotations

import asyncio
import json
import pathlib
from typing import Any

from bench.meter import Meter
from bench.subscribers import Taken

_START_TIMEOUT = 90.0
_REPLY_TIMEOUT = 60.0
_LINE_LIMIT = 1 << 28  # a take's header lists one server timestamp per event


class GoSubscriberPool:
    """N streams over `connections` TCP connections, held by one Go process."""

    kind = "go"

    def __init__(
        self,
        binary: pathlib.Path,
        address: str,
        n: int,
        connections: int,
        batched: bool = False,
        open_rate: float = 0.0,
    ) -> None:
        self._args = [
            str(binary),
            "-address",
            address,
            "-streams",
            str(n),
            "-connections",
            str(connections),
            "-open-rate",
            str(int(open_rate)),
        ]
        if batched:
            self._args.append("-batched")
        self._proc: asyncio.subprocess.Process | None = None
        self.meter: Meter | None = None
        self.pid = 0  # the pool process, once started

    async def start(self) -> None:
        """Start the process and wait until every stream is live on the server."""
        self._proc = await asyncio.create_subprocess_exec(
            *self._args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=_LINE_LIMIT,
        )
        line = await self._line(_START_TIMEOUT)
        status, _, pid = line.partition(" ")
        if status != "ready":
            raise RuntimeError(f"Go subscriber pool failed to start: {line!r}")
        self.pid = int(pid)
        self.meter = Meter(self.pid)

    async def _line(self, wait_s: float = _REPLY_TIMEOUT) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        try:
            line = await asyncio.wait_for(self._proc.stdout.readline(), wait_s)
        except TimeoutError:
            raise TimeoutError("Go subscriber pool did not answer") from None
        if not line:
            code = await self._proc.wait()
            raise RuntimeError(f"Go subscriber pool exited (status {code}); see its stderr")
        return line.decode().strip()

    async def _ask(self, command: str) -> Any:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(command.encode() + b"\n")
        await self._proc.stdin.drain()
        return json.loads(await self._line())

    async def received(self) -> tuple[int, int, int]:
        """Messages recorded since the last take, lagged and disconnected streams."""
        reply = await self._ask("count")
        return reply["count"], reply["lagged"], reply["disconnected"]

    async def take(self) -> list[Taken]:
        """The records since the previous take, as one Taken."""
        header = await self._ask("take")
        assert self._proc is not None and self._proc.stdout is not None
        stamps = await self._proc.stdout.readexactly(header["stamps_bytes"])
        received = await self._proc.stdout.readexactly(header["received_bytes"])
        return [
            Taken(
                stamps=stamps,
                received=received,
                timestamps={int(s): ts for s, ts in header["timestamps"].items()},
                realtime_offset_ns=header["realtime_offset_ns"],
                lagged=header["lagged"],
                disconnected=header["disconnected"],
                messages=header["messages"],
            )
        ]

    async def open_slow(self) -> None:
        """Open the stalled stream, on its own connection."""
        await self._ask("open_slow")

    async def drain_slow(self) -> tuple[int, str]:
        """Read the stalled stream out: (messages it had been sent, its final status)."""
        reply = await self._ask("drain_slow")
        return reply["messages"], reply["status"]

    async def stop(self) -> None:
        """Ask the process to exit; kill it if it does not."""
        if self._proc is None:
            return
        try:
            await self._ask("stop")
            await asyncio.wait_for(self._proc.wait(), 10.0)
        except (OSError, EOFError, TimeoutError, RuntimeError, ValueError):
            if self._proc.returncode is None:
                self._proc.kill()
                await self._proc.wait()
