"""watch_events() reads the batched stream, and the plain one from a server without it.

The server here is a real grpc.aio server in this process that offers only
SubscribeToTaskEvents, as servers from before SubscribeToTaskEventBatches do:
gRPC itself answers the batched call UNIMPLEMENTED.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from grpc import aio
from rigger.v1 import rigger_pb2 as pb
from rigger_client import connect, stub, watch_events

SERVICE = "rigger.v1.RiggerService"
PLAIN = "SubscribeToTaskEvents"
BATCHES = "SubscribeToTaskEventBatches"
WAIT = 20.0


@dataclass
class Step:
    """What one SubscribeToTaskEvents call does: send events up to `upto`, then end."""

    upto: int
    ending: grpc.StatusCode | None = None  # None: stay open until cancelled
    head: str | None = None  # the rigger-head-sequence header


@dataclass
class PlainOnlyServer:
    """Plays `steps`, one per SubscribeToTaskEvents call, and records every call."""

    steps: list[Step]
    offer_plain: bool = True
    methods: list[str] = field(default_factory=list)
    after_sequences: list[int | None] = field(default_factory=list)

    async def subscribe(
        self, request: pb.SubscribeToTaskEventsRequest, context: aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.TaskEvent]:
        after = request.after_sequence if request.HasField("after_sequence") else None
        self.after_sequences.append(after)
        step = self.steps[len(self.after_sequences) - 1]
        if step.head is not None:
            await context.send_initial_metadata((("rigger-head-sequence", step.head),))
        for sequence in range((after or 0) + 1, step.upto + 1):
            yield pb.TaskEvent(sequence=sequence)
        if step.ending is None:
            await asyncio.Event().wait()  # open until the client cancels
        else:
            await context.abort(step.ending, "scripted ending")


class _Recorder(aio.ServerInterceptor):
    def __init__(self, methods: list[str]) -> None:
        self.methods = methods

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        self.methods.append(handler_call_details.method.rsplit("/", 1)[-1])
        return await continuation(handler_call_details)


@contextlib.asynccontextmanager
async def serving(script: PlainOnlyServer) -> AsyncIterator[str]:
    """The server on a free loopback port; yields its address."""
    server = aio.server(interceptors=[_Recorder(script.methods)])
    handlers = {}
    if script.offer_plain:
        handlers[PLAIN] = grpc.unary_stream_rpc_method_handler(
            script.subscribe,
            request_deserializer=pb.SubscribeToTaskEventsRequest.FromString,
            response_serializer=pb.TaskEvent.SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


async def _collect(
    address: str, request: pb.SubscribeToTaskEventsRequest, count: int, **options: Any
) -> list[int]:
    got: list[int] = []

    async def read() -> None:
        async with connect(address) as channel:
            events = watch_events(
                stub(channel), request, initial_backoff=0.001, max_backoff=0.002, **options
            )
            async with contextlib.aclosing(events):
                async for event in events:
                    got.append(event.sequence)
                    if len(got) == count:
                        return

    await asyncio.wait_for(read(), WAIT)
    return got


def _after(sequence: int) -> pb.SubscribeToTaskEventsRequest:
    return pb.SubscribeToTaskEventsRequest(after_sequence=sequence)


async def test_a_server_without_batches_is_read_through_the_plain_stream() -> None:
    script = PlainOnlyServer([Step(upto=3, ending=grpc.StatusCode.UNAVAILABLE), Step(upto=5)])
    fallbacks: list[str] = []
    async with serving(script) as address:
        got = await _collect(address, _after(0), 5, on_fallback=fallbacks.append)
    assert got == [1, 2, 3, 4, 5]
    # One batched attempt, then the plain stream for the rest of the watch,
    # resumed after the last event as always.
    assert script.methods == [BATCHES, PLAIN, PLAIN]
    assert script.after_sequences == [0, 3]
    assert len(fallbacks) == 1


async def test_a_watch_asked_for_the_plain_stream_never_asks_for_batches() -> None:
    script = PlainOnlyServer([Step(upto=2)])
    async with serving(script) as address:
        got = await _collect(address, _after(0), 2, batched=False)
    assert got == [1, 2]
    assert script.methods == [PLAIN]


async def test_unimplemented_from_the_plain_stream_as_well_is_raised() -> None:
    script = PlainOnlyServer([], offer_plain=False)
    async with serving(script) as address:
        with pytest.raises(aio.AioRpcError) as raised:
            await _collect(address, _after(0), 1)
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert script.methods == [BATCHES, PLAIN]


async def test_a_live_watch_reports_the_head_it_will_resume_after() -> None:
    script = PlainOnlyServer([Step(upto=0, head="7", ending=grpc.StatusCode.UNAVAILABLE), Step(9)])
    heads: list[int] = []
    async with serving(script) as address:
        got = await _collect(address, pb.SubscribeToTaskEventsRequest(), 2, on_head=heads.append)
    assert heads == [7]
    assert script.after_sequences == [None, 7]
    assert got == [8, 9]


@pytest.mark.parametrize("head", ["soon", "-1", "18446744073709551616", "\uff11\uff12"])
async def test_a_head_that_is_no_sequence_leaves_the_watch_live_only(head: str) -> None:
    script = PlainOnlyServer([Step(upto=0, head=head, ending=grpc.StatusCode.UNAVAILABLE), Step(2)])
    heads: list[int] = []
    async with serving(script) as address:
        await _collect(address, pb.SubscribeToTaskEventsRequest(), 2, on_head=heads.append)
    assert heads == []
    assert script.after_sequences == [None, None]
