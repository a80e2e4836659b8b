"""The Python conformance executor: `python -m conformance.executors.python`.

It speaks the rigger.conformance.v1 harness protocol: size-delimited
Instructions arrive on stdin, size-delimited Observations leave on stdout.
It never judges anything. Each instruction is started as soon as it arrives,
so calls run concurrently; what the server sends back is parsed with the
generated rigger.v1 classes and re-serialized, so the runner sees exactly what
this language's generated code made of it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from grpc import aio
from rigger.conformance.v1 import harness_pb2 as hp
from rigger.v1 import rigger_pb2
from rigger_client import connect

from conformance.executors.framing import FrameReader, encode_frame

SERVICE = rigger_pb2.DESCRIPTOR.services_by_name["RiggerService"]

# How long Shutdown waits for cancelled streams and in-flight calls to report
# before giving up on them; a wedged call must not keep the process alive.
SHUTDOWN_GRACE_S = 5.0


# --- output --------------------------------------------------------------------


class ObservationWriter:
    """The only writer of stdout: one frame per observation, flushed at once.

    All writes happen on the event loop's thread, so frames never interleave.
    Flushing per frame matters because the runner measures delivery times.
    """

    def __init__(self, out: BinaryIO) -> None:
        self._out = out

    def emit(self, observation: hp.Observation) -> None:
        """Write one observation."""
        self._out.write(encode_frame(observation.SerializeToString()))
        self._out.flush()


# --- grpc helpers --------------------------------------------------------------


def _headers(metadata: Iterable[tuple[str, str | bytes]] | None) -> list[hp.Header]:
    headers = []
    for key, value in metadata or ():
        # Binary (-bin) values arrive decoded; the protocol wants them as on the wire.
        text = (
            base64.b64encode(value).decode("ascii").rstrip("=")
            if isinstance(value, bytes)
            else value
        )
        headers.append(hp.Header(key=key.lower(), value=text))
    return headers


def _status(code: grpc.StatusCode | None, details: str | None) -> hp.Status:
    number = code.value[0] if code is not None else grpc.StatusCode.UNKNOWN.value[0]
    return hp.Status(code=number, message=details or "")


def _message_class(descriptor: Any) -> type[Message]:
    return message_factory.GetMessageClass(descriptor)


def _method(name: str) -> MethodDescriptor:
    method: MethodDescriptor | None = SERVICE.methods_by_name.get(name)
    if method is None:
        raise ValueError(f"{SERVICE.full_name} has no method {name!r}")
    return method


def _path(method: MethodDescriptor) -> str:
    return f"/{SERVICE.full_name}/{method.name}"


def _timeout(timeout_ms: int) -> float | None:
    return timeout_ms / 1000 if timeout_ms else None


# --- the executor --------------------------------------------------------------


@dataclass
class _Outgoing:
    """A send (`message`) or the half-close (`message` None), for the instruction `iid`."""

    iid: int
    message: Message | None


@dataclass
class _Stream:
    """One open streaming call and the tasks that serve it."""

    name: str
    instruction_id: int
    call: Any
    channel: aio.Channel
    reader: asyncio.Task[None] | None = None
    # Sends and the half-close go through one queue so they reach the wire in
    # the order the runner gave them, whatever the task scheduling. None in
    # the queue stops its writer once the stream has ended.
    outbox: asyncio.Queue[_Outgoing | None] = field(default_factory=asyncio.Queue)
    writer: asyncio.Task[None] | None = None


class Executor:
    """Carries out instructions against a Rigger server and reports what happened."""

    def __init__(self, writer: ObservationWriter) -> None:
        self._writer = writer
        self._channel: aio.Channel | None = None
        self._channels: list[aio.Channel] = []
        self._streams: dict[str, _Stream] = {}
        self._ended: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- reporting

    def _emit(self, instruction_id: int, **result: Any) -> None:
        self._writer.emit(hp.Observation(instruction_id=instruction_id, **result))

    def _done(self, instruction_id: int) -> None:
        self._emit(instruction_id, done=hp.Done())

    def _error(self, instruction_id: int, message: str) -> None:
        self._emit(instruction_id, executor_error=hp.ExecutorError(message=message))

    def _spawn(self, instruction_id: int, work: Awaitable[None]) -> asyncio.Task[None]:
        async def guarded() -> None:
            try:
                await work
            except Exception as exc:
                # An exception here is a bug in the instruction or this
                # executor, never a server outcome: report it, keep serving.
                self._error(instruction_id, f"{type(exc).__name__}: {exc}")

        task = asyncio.ensure_future(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- dispatch

    def dispatch(self, instruction: hp.Instruction) -> bool:
        """Start one instruction; returns False once it was Shutdown.

        Everything that later instructions depend on (the current channel, a
        stream's registration) happens here, synchronously and in arrival
        order; the waiting happens in tasks, so calls overlap.
        """
        iid = instruction.id
        action = instruction.WhichOneof("action")
        handlers: dict[str, Callable[[int, Any], None]] = {
            "connect": self._connect,
            "unary_call": self._unary_call,
            "open_stream": self._open_stream,
            "stream_send": self._stream_send,
            "stream_close_send": self._stream_close_send,
            "stream_cancel": self._stream_cancel,
        }
        if action == "shutdown":
            return False
        handler = handlers.get(action or "")
        if handler is None:
            self._error(iid, f"unknown instruction action {action!r}")
            return True
        try:
            handler(iid, getattr(instruction, action or ""))
        except Exception as exc:
            self._error(iid, f"{type(exc).__name__}: {exc}")
        return True

    def _current_channel(self) -> aio.Channel:
        if self._channel is None:
            raise RuntimeError("no channel: send Connect first")
        return self._channel

    def _connect(self, iid: int, action: hp.Connect) -> None:
        channel = connect(
            action.address,
            ca_file=action.ca_file or None,
            cert_file=action.cert_file or None,
            key_file=action.key_file or None,
            token=action.token or None,
        )
        self._channel = channel
        self._channels.append(channel)
        self._spawn(iid, self._close_idle_channels())
        self._done(iid)

    async def _close_idle_channels(self) -> None:
        # The runner reconnects for every case; channels that no open stream
        # uses any more would otherwise pile up for the life of the process.
        busy = {id(s.channel) for s in self._streams.values()} | {id(self._channel)}
        idle = [c for c in self._channels if id(c) not in busy]
        self._channels = [c for c in self._channels if id(c) in busy]
        for channel in idle:
            await channel.close()

    def _unary_call(self, iid: int, action: hp.UnaryCall) -> None:
        method = _method(action.method)
        if method.client_streaming or method.server_streaming:
            raise ValueError(f"{action.method} is a streaming method; use OpenStream")
        request_type = _message_class(method.input_type)
        response_type = _message_class(method.output_type)
        request = request_type.FromString(action.request)
        callable_ = self._current_channel().unary_unary(
            _path(method),
            request_serializer=request_type.SerializeToString,
            response_deserializer=response_type.FromString,
        )
        call = callable_(
            request, timeout=_timeout(action.timeout_ms), metadata=tuple(action.metadata.items())
        )
        self._spawn(iid, self._finish_unary(iid, call))

    async def _finish_unary(self, iid: int, call: Any) -> None:
        result = hp.UnaryResult()
        try:
            response = await call
            result.response = response.SerializeToString(deterministic=True)
        except aio.AioRpcError as exc:
            result.status.CopyFrom(_status(exc.code(), exc.details()))
            result.headers.extend(_headers(exc.initial_metadata()))
            result.trailers.extend(_headers(exc.trailing_metadata()))
        except asyncio.CancelledError:
            # The channel was closed under the call (Shutdown).
            result.status.CopyFrom(_status(grpc.StatusCode.CANCELLED, "cancelled at shutdown"))
        else:
            result.status.CopyFrom(_status(await call.code(), await call.details()))
            result.headers.extend(_headers(await call.initial_metadata()))
            result.trailers.extend(_headers(await call.trailing_metadata()))
        self._emit(iid, unary_result=result)

    def _open_stream(self, iid: int, action: hp.OpenStream) -> None:
        if action.stream in self._streams:
            raise ValueError(f"stream {action.stream!r} is already open")
        method = _method(action.method)
        if not method.server_streaming:
            raise ValueError(f"{action.method} is not a streaming method")
        response_type = _message_class(method.output_type)
        request_type = _message_class(method.input_type)
        channel = self._current_channel()
        options = {
            "timeout": _timeout(action.timeout_ms),
            "metadata": tuple(action.metadata.items()),
        }
        if method.client_streaming:
            call = channel.stream_stream(
                _path(method),
                request_serializer=request_type.SerializeToString,
                response_deserializer=response_type.FromString,
            )(**options)
        else:
            request = request_type.FromString(action.request)
            call = channel.unary_stream(
                _path(method),
                request_serializer=request_type.SerializeToString,
                response_deserializer=response_type.FromString,
            )(request, **options)
        stream = _Stream(name=action.stream, instruction_id=iid, call=call, channel=channel)
        self._streams[action.stream] = stream
        stream.reader = self._spawn(iid, self._read_stream(stream))
        if method.client_streaming:
            stream.writer = self._spawn(iid, self._write_stream(stream))

    async def _read_stream(self, stream: _Stream) -> None:
        call = stream.call
        iid = stream.instruction_id
        try:
            try:
                metadata = await call.initial_metadata()
            except asyncio.CancelledError:
                metadata = None
            # A trailers-only response (an error before any header) has no
            # headers to report; an empty set on a live stream still counts.
            if metadata is not None and not (call.done() and not metadata):
                self._emit(
                    iid,
                    stream_headers=hp.StreamHeaders(stream=stream.name, headers=_headers(metadata)),
                )
            while True:
                try:
                    message = await call.read()
                except (aio.AioRpcError, asyncio.CancelledError):
                    # The status says why; CancelledError is how grpc.aio
                    # reports a call cancelled from this side.
                    break
                received = time.monotonic_ns()  # CLOCK_MONOTONIC on Linux
                if message is aio.EOF:
                    break
                self._emit(
                    iid,
                    stream_message=hp.StreamMessage(
                        stream=stream.name,
                        message=message.SerializeToString(deterministic=True),
                        received_monotonic_ns=received,
                    ),
                )
            end = hp.StreamEnd(
                stream=stream.name,
                status=_status(await call.code(), await call.details()),
                trailers=_headers(await call.trailing_metadata()),
            )
            self._emit(iid, stream_end=end)
        finally:
            self._streams.pop(stream.name, None)
            self._ended.add(stream.name)
            # Let the writer answer what is still queued, then stop.
            stream.outbox.put_nowait(None)

    async def _write_stream(self, stream: _Stream) -> None:
        while (outgoing := await stream.outbox.get()) is not None:
            try:
                if stream.call.done():
                    pass  # the stream is over: nothing to write to, and StreamEnd says why
                elif outgoing.message is None:
                    await stream.call.done_writing()
                else:
                    await stream.call.write(outgoing.message)
            except (Exception, asyncio.CancelledError) as exc:
                # A write that races with the end of the stream fails (grpc.aio
                # raises CancelledError for a locally cancelled call); that is
                # the stream's outcome, reported by StreamEnd, not a failed send.
                if not stream.call.done():
                    self._error(outgoing.iid, f"{type(exc).__name__}: {exc}")
                    continue
            self._done(outgoing.iid)

    def _queue(self, name: str, outgoing: _Outgoing) -> None:
        stream = self._streams.get(name)
        if stream is None and name in self._ended:
            self._done(outgoing.iid)  # the stream is over; StreamEnd already said how
            return
        if stream is None:
            raise ValueError(f"no stream {name!r}")
        if stream.writer is None:
            raise ValueError(f"stream {name!r} is not a bidi stream")
        stream.outbox.put_nowait(outgoing)

    def _stream_send(self, iid: int, action: hp.StreamSend) -> None:
        method = _method("TaskEventStream")
        message = _message_class(method.input_type).FromString(action.message)
        self._queue(action.stream, _Outgoing(iid, message))

    def _stream_close_send(self, iid: int, action: hp.StreamCloseSend) -> None:
        self._queue(action.stream, _Outgoing(iid, None))

    def _stream_cancel(self, iid: int, action: hp.StreamCancel) -> None:
        stream = self._streams.get(action.stream)
        if stream is None and action.stream not in self._ended:
            raise ValueError(f"no stream {action.stream!r}")
        # Cancelling a stream that already ended is a no-op, as in grpc itself.
        if stream is not None:
            stream.call.cancel()
        self._done(iid)

    # -- shutdown

    async def shutdown(self, iid: int | None) -> None:
        """Cancel every stream, close every channel, then report Done."""
        for stream in list(self._streams.values()):
            stream.call.cancel()
        readers = [s.reader for s in self._streams.values() if s.reader is not None]
        if readers:
            await asyncio.wait(readers, timeout=SHUTDOWN_GRACE_S)
        for channel in self._channels:
            await channel.close()
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=SHUTDOWN_GRACE_S)
        if iid is not None:
            self._done(iid)


def _start_reader(loop: asyncio.AbstractEventLoop) -> asyncio.Queue[hp.Instruction | None]:
    """Read instructions on a thread; a blocking read must never stall the event loop."""
    queue: asyncio.Queue[hp.Instruction | None] = asyncio.Queue()

    def pump() -> None:
        reader = FrameReader(sys.stdin.fileno())
        try:
            while True:
                frame = reader.read()
                if frame is None:
                    break
                loop.call_soon_threadsafe(queue.put_nowait, hp.Instruction.FromString(frame))
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=pump, name="instructions", daemon=True).start()
    return queue


async def serve() -> int:
    """Run instructions from stdin until Shutdown or end of input."""
    executor = Executor(ObservationWriter(sys.stdout.buffer))
    queue = _start_reader(asyncio.get_running_loop())
    while True:
        instruction = await queue.get()
        if instruction is None:
            # The runner went away without Shutdown: clean up quietly.
            await executor.shutdown(None)
            return 0
        if not executor.dispatch(instruction):
            await executor.shutdown(instruction.id)
            return 0


def main() -> int:
    """Entry point of `python -m conformance.executors.python`."""
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(serve())
    return 130
