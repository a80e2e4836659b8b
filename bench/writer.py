"""The writer: stamped AddTask and UpdateTask calls, paced at a rate or as fast as possible.

Every call's title carries `time.monotonic_ns()` read just before the call is
made; that stamp stands in for the commit time (the server commits a little
later: request transit, queueing on its writer thread, the fsync).
Writes alternate between AddTask (a CREATED event) and UpdateTask of a title on
a pre-created task (an UPDATED event), so each call yields exactly one event.
An AddTask-only writer (for servers without `UpdateTaskRequest.title`, and for
the probe cell, which writes as the Rust release's probe did) only adds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence

import grpc
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc

from bench import payload

_POOL = 32  # tasks that UpdateTask rotates over
_MAX_IN_FLIGHT = 256  # paced mode: open loop, but never unbounded


@dataclasses.dataclass(slots=True)
class WriteStats:
    """What the writer did in one cell."""

    sent: int = 0
    failed: int = 0
    started_ns: int = 0
    ended_ns: int = 0
    ack_ns: list[int] = dataclasses.field(default_factory=list)  # call durations

    @property
    def seconds(self) -> float:
        return (self.ended_ns - self.started_ns) / 1e9


class TitleIgnored(RuntimeError):
    """The server answered UpdateTask without applying the title: no event would follow."""


class Writer:
    """Stamped writes over one channel (or, for the probe cell, one channel per writer)."""

    def __init__(self, channel: grpc.aio.Channel, add_only: bool = False) -> None:
        self._stub = rigger_pb2_grpc.RiggerServiceStub(channel)
        self._pool: list[str] = []
        self.add_only = add_only

    async def prepare(self) -> None:
        """Create the tasks UpdateTask will rewrite (their events carry no stamp)."""
        for i in range(_POOL):
            reply = await self._stub.AddTask(pb.AddTaskRequest(title=f"bench pool {i}"))
            self._pool.append(reply.task.id or f"pool-{i}")

    async def check_title_update(self) -> None:
        """Fail unless the server applies `UpdateTaskRequest.title` (a `--target` check).

        A server that predates the field ignores it, answers OK and emits
        nothing, and every cell would wait for events that never come.
        """
        if self.add_only:
            return
        title = "bench pool 0 (title update check)"
        reply = await self._stub.UpdateTask(
            pb.UpdateTaskRequest(task_id=self._pool[0], title=title)
        )
        if reply.task.title != title:
            raise TitleIgnored(
                "the server ignored UpdateTaskRequest.title (it predates the field?); "
                "rerun with --add-only"
            )

    async def _one(
        self,
        stub: rigger_pb2_grpc.RiggerServiceStub,
        add: bool,
        index: int,
        payload_bytes: int,
        stats: WriteStats,
    ) -> None:
        stamp = time.monotonic_ns()
        title = payload.title(stamp, payload_bytes)
        try:
            if add:
                await stub.AddTask(pb.AddTaskRequest(title=title))
            else:
                task_id = self._pool[(index // 2) % len(self._pool)]
                await stub.UpdateTask(pb.UpdateTaskRequest(task_id=task_id, title=title))
        except grpc.aio.AioRpcError:
            stats.failed += 1
            return
        stats.ack_ns.append(time.monotonic_ns() - stamp)

    def _adds(self, index: int) -> bool:
        return self.add_only or index % 2 == 0

    async def paced(
        self, rate: float, seconds: float, max_events: int, payload_bytes: int
    ) -> WriteStats:
        """Open loop: call i starts at t0 + i/rate, whether or not earlier calls returned."""
        stats = WriteStats()
        total = max(1, min(max_events, round(rate * seconds)))
        gate = asyncio.Semaphore(_MAX_IN_FLIGHT)
        pending: set[asyncio.Task[None]] = set()

        async def guarded(index: int) -> None:
            try:
                await self._one(self._stub, self._adds(index), index, payload_bytes, stats)
            finally:
                gate.release()

        stats.started_ns = t0 = time.monotonic_ns()
        for i in range(total):
            delay = (t0 + i * 1e9 / rate - time.monotonic_ns()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
            await gate.acquire()
            task = asyncio.create_task(guarded(i))
            pending.add(task)
            task.add_done_callback(pending.discard)
            stats.sent += 1
        await asyncio.gather(*pending)
        stats.ended_ns = time.monotonic_ns()
        return stats

    async def saturate(
        self,
        writers: int,
        seconds: float,
        max_events: int,
        payload_bytes: int,
        own_channels: Sequence[grpc.aio.Channel] = (),
    ) -> WriteStats:
        """Closed loop: `writers` concurrent callers, each sending its next call on reply.

        With `own_channels` (one per writer), each writer calls AddTask only,
        on its own connection; otherwise all share this writer's channel.
        """
        stats = WriteStats()
        counter = iter(range(max_events))
        stats.started_ns = time.monotonic_ns()
        deadline = stats.started_ns + int(seconds * 1e9)
        stubs = [rigger_pb2_grpc.RiggerServiceStub(c) for c in own_channels]

        async def caller(number: int) -> None:
            stub = stubs[number] if stubs else self._stub
            for index in counter:
                if time.monotonic_ns() >= deadline:
                    return
                stats.sent += 1
                add = bool(stubs) or self._adds(index)
                await self._one(stub, add, index, payload_bytes, stats)

        await asyncio.gather(*(caller(i) for i in range(writers)))
        stats.ended_ns = time.monotonic_ns()
        return stats
