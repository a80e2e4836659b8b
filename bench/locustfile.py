"""Locust load for Rigger: sidecars holding an event stream open, writers at a set rate.

    python -m locust -f bench/locustfile.py --headless --host 127.0.0.1:PORT \
        --users 102 --spawn-rate 100 --run-time 30s --processes 2 --writer-rate 50

`SidecarUser` keeps one SubscribeToTaskEvents stream open and reads it; every
`--events-per-entry` events it fires ONE locust request entry ("STREAM",
"TaskEvent xN") whose response time is the mean stamp->receive latency of those
events, so the stats count batches, not millions of messages. `WriterUser`
(`--writers` of them, fixed count) alternates stamped AddTask and UpdateTask
calls at `--writer-rate` calls/s each. A stream that ends with RESOURCE_EXHAUSTED
(lagged) or any other status is a failed entry ("STREAM", "lagged" or
"disconnected"), and the sidecar resubscribes.

gRPC under locust: locust monkey-patches the standard library with gevent; the
sync grpc client then needs `grpc.experimental.gevent.init_gevent()` before any
channel exists, or its blocking calls would stall the whole worker process.
Locust's --processes forks before any user starts, so no channel crosses a fork.

Run it from the repository root with `python -m locust`, which puts the
working directory on the path: the stamp format lives in bench/payload.py.
"""

from __future__ import annotations

import time
from typing import Any

import grpc
import grpc.experimental.gevent as grpc_gevent
from locust import User, constant, constant_throughput, events, task
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc

from bench import payload

grpc_gevent.init_gevent()  # after locust's monkey-patching (on import), before any channel

STREAM_METHOD = "/rigger.v1.RiggerService/SubscribeToTaskEvents"


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--writer-rate", type=float, default=10.0, help="calls/s per writer")
    parser.add_argument("--writers", type=int, default=2, help="number of WriterUsers")
    parser.add_argument("--payload-bytes", type=int, default=250, help="encoded event size")
    parser.add_argument(
        "--events-per-entry", type=int, default=100, help="events aggregated per stats entry"
    )


@events.init.add_listener
def _fix_writer_count(environment: Any, **_: Any) -> None:
    options = environment.parsed_options
    if options is not None:
        WriterUser.fixed_count = options.writers


class SidecarUser(User):
    """One sidecar: a live event stream, read until the user stops."""

    wait_time = constant(0)

    def on_start(self) -> None:
        self._channel = grpc.insecure_channel(self.host)
        self._subscribe = self._channel.unary_stream(STREAM_METHOD)  # raw bytes out
        self._call: Any = None

    def on_stop(self) -> None:
        if self._call is not None:
            self._call.cancel()
        self._channel.close()

    def _fire(self, name: str, started: float, latency_ms: float, length: int, exc: Any) -> None:
        self.environment.events.request.fire(
            request_type="STREAM",
            name=name,
            response_time=latency_ms,
            response_length=length,
            exception=exc,
            context={},
            start_time=started,
        )

    @task
    def listen(self) -> None:
        """Read the stream; one stats entry per batch of events, one per stream end."""
        per_entry = self.environment.parsed_options.events_per_entry
        name = f"TaskEvent x{per_entry}"
        count = size = 0
        latency_sum_ns = 0
        self._call = self._subscribe(b"", wait_for_ready=True)
        try:
            for data in self._call:
                now = time.monotonic_ns()
                stamp = payload.read_stamp(data)
                if stamp < 0:
                    continue
                count += 1
                size += len(data)
                latency_sum_ns += now - stamp
                if count == per_entry:
                    self._fire(name, time.time(), latency_sum_ns / count / 1e6, size, None)
                    count = size = latency_sum_ns = 0
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.CANCELLED:
                return  # our own on_stop
            lagged = exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            self._fire("lagged" if lagged else "disconnected", time.time(), 0, 0, exc)


class WriterUser(User):
    """A writer: stamped AddTask, then UpdateTask of the title, at a fixed rate."""

    fixed_count = 2  # replaced by --writers at init

    def wait_time(self) -> float:
        return constant_throughput(self.environment.parsed_options.writer_rate)(self)

    def on_start(self) -> None:
        self._channel = grpc.insecure_channel(self.host)
        self._stub = rigger_pb2_grpc.RiggerServiceStub(self._channel)
        self._task_id: str | None = None
        self._size = self.environment.parsed_options.payload_bytes

    def on_stop(self) -> None:
        self._channel.close()

    def _call(self, name: str, method: Any, request: Any) -> Any:
        started, began = time.time(), time.perf_counter()
        reply, exc = None, None
        try:
            reply = method(request)
        except grpc.RpcError as error:
            exc = error
        self.environment.events.request.fire(
            request_type="grpc",
            name=name,
            response_time=(time.perf_counter() - began) * 1000,
            response_length=reply.ByteSize() if reply is not None else 0,
            exception=exc,
            context={},
            start_time=started,
        )
        return reply

    @task
    def write(self) -> None:
        """AddTask when there is no task yet or every other call; UpdateTask otherwise."""
        title = payload.title(time.monotonic_ns(), self._size)
        if self._task_id is None:
            reply = self._call("AddTask", self._stub.AddTask, pb.AddTaskRequest(title=title))
            self._task_id = reply.task.id if reply is not None else None
        else:
            request = pb.UpdateTaskRequest(task_id=self._task_id, title=title)
            self._call("UpdateTask", self._stub.UpdateTask, request)
            self._task_id = None
