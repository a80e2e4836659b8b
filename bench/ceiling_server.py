"""The grpc.aio ceiling: a bare grpc.aio streaming server speaking Rigger's method paths.

No storage, no filtering, no domain objects. AddTask and UpdateTask splice the
request's title into pre-encoded TaskEvent fragments and offer the bytes to every
open SubscribeToTaskEvents (or SubscribeToTaskEventBatches) stream, each a
bounded deque like Rigger's. The fanout harness drives it exactly as it drives
Rigger, so Rigger's figures can be read as a fraction of what Python grpc.aio
itself allows on this machine. bench/ceiling-rs is the same server on tonic.

Run as a script (`python bench/ceiling_server.py grpc --port 0 ...`): it takes
the arguments `rig grpc` takes and writes the same `--ready-file`, so
testkit.serverproc.ServerProcess can start and health-check it.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import pathlib
import signal
import sys
import uuid
from collections.abc import AsyncIterator

import grpc
from google.protobuf.internal.encoder import _VarintBytes as varint
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from rigger.v1 import rigger_pb2 as pb
from rigger_server.cli import write_ready_file

SERVICE = "rigger.v1.RiggerService"
# A batch message carries whatever is queued, up to about this many bytes, so
# no message outgrows a client's default 4 MiB receive limit.
BATCH_BYTES = 1 << 20


def _field(number: int, payload: bytes) -> bytes:
    # Wire type 2 (length-delimited): strings and embedded messages.
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def _now() -> bytes:
    # Same format and cost as Rigger's event timestamp, so the harness's
    # server-timestamp latency means the same thing for both servers.
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()


class EventTemplate:
    """Pre-encoded TaskEvent pieces; only the title, timestamp and sequence vary."""

    def __init__(self, event_type: int) -> None:
        now = _now()
        self._event_id = _field(1, str(uuid.uuid4()).encode())
        self._type = varint(3 << 3) + varint(event_type)
        self._task_id = _field(1, str(uuid.uuid4()).encode())
        self._task_rest = (
            varint(5 << 3) + varint(1) + _field(10, now) + _field(11, now) + b"\x80\x01\x01"
        )  # status TODO, created_at, updated_at, version (field 16) = 1

    def encode(self, title: bytes, sequence: int) -> bytes:
        """The full encoded TaskEvent."""
        task = self._task_id + _field(2, title) + self._task_rest
        return (
            self._event_id
            + _field(2, _now())
            + self._type
            + _field(4, task)
            + varint(7 << 3)
            + varint(sequence)
        )


class Overflow(Exception):
    """The stream fell more than `buffer` events behind."""


class Stream:
    """One subscriber: a bounded queue of encoded events."""

    def __init__(self, buffer: int) -> None:
        self.buffer = buffer
        self.queue: collections.deque[bytes] = collections.deque()
        self.wakeup = asyncio.Event()
        self.overflowed = False

    def offer(self, data: bytes) -> bool:
        if len(self.queue) >= self.buffer:
            self.overflowed = True
            self.queue.clear()
            self.wakeup.set()
            return False
        self.queue.append(data)
        self.wakeup.set()
        return True


class Hub:
    """Every open stream; broadcasting is a loop of deque appends."""

    def __init__(self, buffer: int) -> None:
        self.buffer = buffer
        self.streams: set[Stream] = set()
        self.sequence = 0
        self.created = EventTemplate(1)
        self.updated = EventTemplate(2)
        reply_task = pb.Task(id="ceiling", title="t")
        self.add_reply = pb.AddTaskResponse(task=reply_task).SerializeToString()
        self.update_reply = pb.UpdateTaskResponse(task=reply_task).SerializeToString()

    def broadcast(self, template: EventTemplate, title: bytes) -> None:
        self.sequence += 1
        data = template.encode(title, self.sequence)
        lagged = [s for s in self.streams if not s.offer(data)]
        for stream in lagged:
            self.streams.discard(stream)

    async def add_task(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self.broadcast(self.created, pb.AddTaskRequest.FromString(request).title.encode())
        return self.add_reply

    async def update_task(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self.broadcast(self.updated, pb.UpdateTaskRequest.FromString(request).title.encode())
        return self.update_reply

    async def _feed(self, context: grpc.aio.ServicerContext) -> AsyncIterator[list[bytes]]:
        """Everything queued for one new stream, each time there is something."""
        stream = Stream(self.buffer)
        self.streams.add(stream)
        try:
            await context.send_initial_metadata(())
            while True:
                while not stream.queue:
                    if stream.overflowed:
                        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "lagged")
                    stream.wakeup.clear()
                    await stream.wakeup.wait()
                batch = list(stream.queue)
                stream.queue.clear()
                yield batch
        finally:
            self.streams.discard(stream)

    async def subscribe(
        self, request: bytes, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        async with contextlib.aclosing(self._feed(context)) as feed:
            async for batch in feed:
                for data in batch:
                    yield data

    async def subscribe_batches(
        self, request: bytes, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        # SubscribeToTaskEventBatchesResponse: `events` (field 1) once per event.
        async with contextlib.aclosing(self._feed(context)) as feed:
            async for batch in feed:
                message: list[bytes] = []
                size = 0
                for data in batch:
                    message.append(_field(1, data))
                    size += len(data)
                    if size >= BATCH_BYTES:
                        yield b"".join(message)
                        message, size = [], 0
                if message:
                    yield b"".join(message)


def _handler(hub: Hub) -> grpc.GenericRpcHandler:
    # No (de)serializers: requests arrive as bytes, replies leave pre-encoded.
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "AddTask": grpc.unary_unary_rpc_method_handler(hub.add_task),
            "UpdateTask": grpc.unary_unary_rpc_method_handler(hub.update_task),
            "SubscribeToTaskEvents": grpc.unary_stream_rpc_method_handler(hub.subscribe),
            "SubscribeToTaskEventBatches": grpc.unary_stream_rpc_method_handler(
                hub.subscribe_batches
            ),
        },
    )


async def serve(port: int, buffer: int, ready_file: pathlib.Path | None) -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((_handler(Hub(buffer)),))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    print(f"grpc.aio ceiling on 127.0.0.1:{bound} ({buffer} event buffer)", flush=True)
    if ready_file is not None:
        write_ready_file(ready_file, [f"127.0.0.1:{bound}"], bound)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    await server.stop(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["grpc"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--buffer", type=int, default=1000)
    parser.add_argument("--db", help="ignored: the ceiling stores nothing")
    parser.add_argument("--ready-file", type=pathlib.Path)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.port, args.buffer, args.ready_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
