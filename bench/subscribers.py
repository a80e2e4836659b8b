"""A subscriber process: many SubscribeToTaskEvents (or ...Batches) streams over a few channels.

Each stream records, per message, the stamp the writer put in the title and the
receive time on CLOCK_MONOTONIC. Messages stay raw bytes (no deserializer), so
the client spends as little CPU per message as grpc.aio allows and the server,
not this process, is what the harness measures.

The harness drives the process over a multiprocessing pipe with small commands
(see `_serve_commands`); the process answers each with one reply.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import dataclasses
import os
import time
from multiprocessing.connection import Connection

import grpc
from rigger.v1 import rigger_pb2 as pb

from bench.payload import MARK, STAMP_DIGITS

METHOD = "/rigger.v1.RiggerService/SubscribeToTaskEvents"
_REQUEST = pb.SubscribeToTaskEventsRequest().SerializeToString()
BATCH_METHOD = "/rigger.v1.RiggerService/SubscribeToTaskEventBatches"
_BATCH_REQUEST = pb.SubscribeToTaskEventBatchesRequest().SerializeToString()
_READY_TIMEOUT = 60.0
_SLOW_DRAIN_TIMEOUT = 10.0
_RESUBSCRIBE_PAUSE = 0.05


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """What one subscriber process opens."""

    address: str
    streams: int
    channels: int
    batched: bool = False  # SubscribeToTaskEventBatches: several events per message
    open_rate: float = 0.0  # streams opened per second; 0: all at once


@dataclasses.dataclass(slots=True)
class Taken:
    """Everything recorded since the previous take, in a picklable form."""

    stamps: bytes  # array('q'): the writer's monotonic stamp of each received event
    received: bytes  # array('q'): monotonic receive time of each, same order
    timestamps: dict[int, str]  # stamp -> the server's RFC 3339 event timestamp
    realtime_offset_ns: int  # time.time_ns() - time.monotonic_ns() in this process
    lagged: int  # streams ended with RESOURCE_EXHAUSTED
    disconnected: int  # streams ended with any other status
    messages: int = 0  # stamped messages received (a batch counts once)


class Recorder:
    """Shared by every stream of the process: one pair of arrays, appended per message."""

    def __init__(self, batched: bool = False) -> None:
        self.batched = batched
        self.stamps = array.array("q")
        self.received = array.array("q")
        self.firsts: dict[int, bytes] = {}
        self.messages = 0
        self.lagged = 0
        self.disconnected = 0

    def record(self, data: bytes, now: int) -> None:
        # A batch holds several events, each with its stamp: record every one.
        at = data.find(MARK)
        if at >= 0:  # warm-up traffic carries no stamp
            self.messages += 1
        while at >= 0:
            start = at + len(MARK)
            stamp = int(data[start : start + STAMP_DIGITS])
            self.stamps.append(stamp)
            self.received.append(now)
            if stamp not in self.firsts:
                self.firsts[stamp] = data  # decoded once per event, at take time
            if not self.batched:
                return
            at = data.find(MARK, start + STAMP_DIGITS)

    def _timestamps(self) -> dict[int, str]:
        if not self.batched:
            return {s: pb.TaskEvent.FromString(d).timestamp for s, d in self.firsts.items()}
        found: dict[int, str] = {}
        for data in {id(d): d for d in self.firsts.values()}.values():
            for event in pb.SubscribeToTaskEventBatchesResponse.FromString(data).events:
                at = event.task.title.find(MARK.decode())
                if at >= 0:
                    start = at + len(MARK)
                    found[int(event.task.title[start : start + STAMP_DIGITS])] = event.timestamp
        return {s: found[s] for s in self.firsts if s in found}

    def take(self) -> Taken:
        taken = Taken(
            stamps=self.stamps.tobytes(),
            received=self.received.tobytes(),
            timestamps=self._timestamps(),
            realtime_offset_ns=time.time_ns() - time.monotonic_ns(),
            lagged=self.lagged,
            disconnected=self.disconnected,
            messages=self.messages,
        )
        self.stamps = array.array("q")
        self.received = array.array("q")
        self.firsts = {}
        self.lagged = self.disconnected = self.messages = 0
        return taken


def _channel(address: str, *options: tuple[str, int]) -> grpc.aio.Channel:
    # A local subchannel pool gives each channel its own TCP connection; by
    # default grpc would share one connection between channels to one target.
    return grpc.aio.insecure_channel(
        address, options=[("grpc.use_local_subchannel_pool", 1), *options]
    )


async def _stream(channel: grpc.aio.Channel, recorder: Recorder, live: asyncio.Semaphore) -> None:
    """Keep one subscription open; after a lag or disconnect, count it and resubscribe live."""
    # No deserializer: messages stay bytes.
    subscribe = channel.unary_stream(BATCH_METHOD if recorder.batched else METHOD)
    request = _BATCH_REQUEST if recorder.batched else _REQUEST
    announced = False
    while True:
        call = subscribe(request, wait_for_ready=True)
        try:
            await call.initial_metadata()  # sent once the server has registered the queue
            if not announced:
                announced = True
                live.release()
            async for data in call:
                recorder.record(data, time.monotonic_ns())
            recorder.disconnected += 1  # a subscription stream never ends by itself
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                recorder.lagged += 1
            else:
                recorder.disconnected += 1
        await asyncio.sleep(_RESUBSCRIBE_PAUSE)


class SlowSubscriber:
    """A stream on its own connection that stops reading once it is live."""

    def __init__(self, address: str) -> None:
        # Without BDP probing the receive window stays at HTTP/2's 64 KiB, so the
        # stall reaches the server within a cell; with it, grpc's client grows
        # the window and silently absorbs megabytes before the server notices.
        self._channel = _channel(address, ("grpc.http2.bdp_probe", 0))
        self._call: grpc.aio.UnaryStreamCall | None = None

    async def open(self) -> None:
        self._call = self._channel.unary_stream(METHOD)(_REQUEST, wait_for_ready=True)
        await self._call.initial_metadata()

    async def drain(self) -> tuple[int, str]:
        """Read what flow control let the server push, then the status; (messages, code)."""
        assert self._call is not None
        call, count = self._call, 0

        async def read_all() -> None:
            nonlocal count
            async for _ in call:
                count += 1

        code = "STILL_OPEN"
        try:
            await asyncio.wait_for(read_all(), _SLOW_DRAIN_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
        except TimeoutError:
            call.cancel()
        await self._channel.close()
        return count, code


async def _serve_commands(conn: Connection, recorder: Recorder, address: str) -> None:
    loop = asyncio.get_running_loop()
    slow: SlowSubscriber | None = None
    while True:
        command = await loop.run_in_executor(None, conn.recv)
        if command == "count":
            conn.send((len(recorder.stamps), recorder.lagged, recorder.disconnected))
        elif command == "take":
            conn.send(recorder.take())
        elif command == "open_slow":
            slow = SlowSubscriber(address)
            await slow.open()
            conn.send("ok")
        elif command == "drain_slow":
            conn.send(await slow.drain() if slow else (0, "NONE"))
            slow = None
        elif command == "stop":
            conn.send("bye")
            return


async def _run(plan: Plan, conn: Connection) -> None:
    recorder = Recorder(plan.batched)
    channels = [_channel(plan.address) for _ in range(max(1, min(plan.channels, plan.streams)))]
    live = asyncio.Semaphore(0)
    tasks: list[asyncio.Task[None]] = []
    try:
        # In steps of 10 ms, so that thousands of streams do not all open at once.
        step = max(1, round(plan.open_rate / 100)) if plan.open_rate > 0 else plan.streams
        for i in range(plan.streams):
            tasks.append(asyncio.create_task(_stream(channels[i % len(channels)], recorder, live)))
            if (i + 1) % step == 0:
                await asyncio.sleep(0.01)
        async with asyncio.timeout(_READY_TIMEOUT):
            for _ in range(plan.streams):
                await live.acquire()
        conn.send(("ready", os.getpid()))
        await _serve_commands(conn, recorder, plan.address)
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
        for channel in channels:
            await channel.close()


def main(plan: Plan, conn: Connection) -> None:
    """Process entry point (multiprocessing spawn target)."""
    asyncio.run(_run(plan, conn))
