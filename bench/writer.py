"""The writer: stamped AddTask and UpdateTask calls, paced at a rate or as fast as possible.

Every call's title carries `time.monotonic_ns()` read just before the call is
made; that stamp stands in for the commit time (the server commits a little
later: request transit, queueing on its writer thread, the fsync).
Writes alternate between AddTask (a CREATED event) and UpdateTask of a title on
a pre-created task (an UPDATED event), so each call yields exactly one event.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

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


class Writer:
    """Stamped writes over one channel."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = rigger_pb2_grpc.RiggerServiceStub(channel)
        self._pool: list[str] = []

    async def prepare(self) -> None:
        """Create the tasks UpdateTask will rewrite (their events carry no stamp)."""
        for i in range(_POOL):
            reply = await self._stub.AddTask(pb.AddTaskRequest(title=f"bench pool {i}"))
            self._pool.append(reply.task.id or f"pool-{i}")

    async def _one(self, index: int, payload_bytes: int, stats: WriteStats) -> None:
        stamp = time.monotonic_ns()
        title = payload.title(stamp, payload_bytes)
        try:
            if index % 2 == 0:
                await self._stub.AddTask(pb.AddTaskRequest(title=title))
            else:
                task_id = self._pool[(index // 2) % len(self._pool)]
                await self._stub.UpdateTask(pb.UpdateTaskRequest(task_id=task_id, title=title))
        except grpc.aio.AioRpcError:
            stats.failed += 1
            return
        stats.ack_ns.append(time.monotonic_ns() - stamp)

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
                await self._one(index, payload_bytes, stats)
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
        self, writers: int, seconds: float, max_events: int, payload_bytes: int
    ) -> WriteStats:
        """Closed loop: `writers` concurrent callers, each sending its next call on reply."""
        stats = WriteStats()
        counter = iter(range(max_events))
        stats.started_ns = time.monotonic_ns()
        deadline = stats.started_ns + int(seconds * 1e9)

        async def caller() -> None:
            for index in counter:
                if time.monotonic_ns() >= deadline:
                    return
                stats.sent += 1
                await self._one(index, payload_bytes, stats)

        await asyncio.gather(*(caller() for _ in range(writers)))
        stats.ended_ns = time.monotonic_ns()
        return stats
