"""SubscribeToTaskEventBatches: the batched form of SubscribeToTaskEvents, through the real port."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any

import grpc
import pytest
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc
from rigger_client.watch import watch_events
from rigger_server.wire import encode_batch
from serverproc import ServerProcess
from streams import ASSIGNED, CREATED, HEAD_SEQUENCE, WAIT, add, add_many, sequences, trailing

STALLED = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 16384)]


def batches(
    stub: rigger_pb2_grpc.RiggerServiceStub,
    *,
    event_types: Iterable[int] = (),
    assignee: str | None = None,
    after: int | None = None,
) -> Any:
    request = pb.SubscribeToTaskEventBatchesRequest(event_types=list(event_types))
    if assignee is not None:
        request.assignee_filter = assignee
    if after is not None:
        request.after_sequence = after
    return stub.SubscribeToTaskEventBatches(request)


async def read_batched(call: Any, count: int, within: float = WAIT) -> list[pb.TaskEvent]:
    """Read batches until `count` events arrived; every batch must be non-empty."""

    async def read() -> list[pb.TaskEvent]:
        events: list[pb.TaskEvent] = []
        while len(events) < count:
            batch = await call.read()
            if batch is grpc.aio.EOF:
                raise AssertionError(f"stream ended after {len(events)} of {count} events")
            assert isinstance(batch, pb.SubscribeToTaskEventBatchesResponse)
            assert batch.events, "a batch is never empty"
            events.extend(batch.events)
        return events

    return await asyncio.wait_for(read(), within)


async def live(call: Any) -> int:
    metadata = dict(await asyncio.wait_for(call.initial_metadata(), WAIT))
    return int(metadata[HEAD_SEQUENCE])


async def test_batches_carry_every_event_once_in_commit_order(stub):
    call = batches(stub)
    assert await live(call) == 0
    await add_many(stub, 200)
    events = await read_batched(call, 200)
    call.cancel()
    assert sequences(events) == list(range(1, 201))
    assert len({e.event_id for e in events}) == 200


async def test_batches_match_the_plain_stream_event_for_event(stub):
    plain = stub.SubscribeToTaskEvents(pb.SubscribeToTaskEventsRequest())
    batched = batches(stub)
    await live(plain)
    await live(batched)
    await add_many(stub, 60)
    got = await read_batched(batched, 60)
    want = [await asyncio.wait_for(plain.read(), WAIT) for _ in range(60)]
    plain.cancel()
    batched.cancel()
    assert [e.SerializeToString() for e in got] == [e.SerializeToString() for e in want]


async def test_filters_apply_to_batches(stub):
    call = batches(stub, event_types=[CREATED], assignee="ann")
    await live(call)
    await add(stub, "bob's", assignee="bob")
    mine = await add(stub, "ann's", assignee="ann")
    other = await add(stub, "unassigned")
    await stub.UpdateTask(pb.UpdateTaskRequest(task_id=other.id, assignee="ann"))
    (event,) = await read_batched(call, 1)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(call.read(), 0.3)
    call.cancel()
    assert (event.event_type, event.task.id) == (CREATED, mine.id)


async def test_assigned_filter_only(stub):
    call = batches(stub, event_types=[ASSIGNED])
    await live(call)
    task = await add(stub)
    await stub.UpdateTask(pb.UpdateTaskRequest(task_id=task.id, assignee="cy"))
    (event,) = await read_batched(call, 1)
    call.cancel()
    assert event.event_type == ASSIGNED
    assert event.metadata["previous_assignee"] == ""


async def test_after_sequence_replays_then_hands_over_to_live(stub):
    await add_many(stub, 120)
    call = batches(stub, after=20)
    assert await live(call) == 120
    writer = asyncio.ensure_future(add_many(stub, 80, start=120))
    events = await read_batched(call, 180)
    await writer
    call.cancel()
    assert sequences(events) == list(range(21, 201))


async def test_after_sequence_beyond_the_head_is_invalid(stub):
    await add(stub)
    call = batches(stub, after=5)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await asyncio.wait_for(call.read(), WAIT)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "after_sequence" in caught.value.details()


async def test_unknown_event_type_filter_is_invalid(stub):
    call = batches(stub, event_types=[99])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await asyncio.wait_for(call.read(), WAIT)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_lagging_batched_subscriber_ends_with_resource_exhausted_and_resumes(project):
    proc = ServerProcess(project, extra_args=("--buffer", "5")).start()
    try:
        async with grpc.aio.insecure_channel(proc.address) as writer_channel:
            stub = rigger_pb2_grpc.RiggerServiceStub(writer_channel)
            async with grpc.aio.insecure_channel(proc.address, options=STALLED) as channel:
                call = batches(rigger_pb2_grpc.RiggerServiceStub(channel), after=0)
                await live(call)
                await add_many(stub, 400, padded=True)
                events: list[pb.TaskEvent] = []
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    while True:
                        batch = await asyncio.wait_for(call.read(), WAIT)
                        assert batch is not grpc.aio.EOF
                        events.extend(batch.events)
            error = caught.value
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            last = int(trailing(error, "rigger-last-sequence"))
            assert sequences(events) == list(range(1, last + 1))
            assert f"last sequence received: {last}" in error.details()
            resumed = batches(stub, after=last)
            rest = await read_batched(resumed, 400 - last)
            resumed.cancel()
            assert sequences(rest) == list(range(last + 1, 401))
    finally:
        proc.stop()


def test_a_batch_is_the_generated_message_encoding():
    events = [
        pb.TaskEvent(
            event_id=f"e{i}",
            event_type=CREATED,
            task=pb.Task(id=f"t{i}", title="x" * size),
            sequence=i,
        )
        for i, size in enumerate([0, 1, 200, 20000], start=1)
    ]
    encoded = encode_batch(e.SerializeToString() for e in events)
    assert encoded == pb.SubscribeToTaskEventBatchesResponse(events=events).SerializeToString()
    assert list(pb.SubscribeToTaskEventBatchesResponse.FromString(encoded).events) == events


async def test_the_python_watch_helper_reads_batches_one_event_at_a_time(stub):
    await add_many(stub, 30)
    request = pb.SubscribeToTaskEventsRequest(after_sequence=10)
    got: list[pb.TaskEvent] = []

    async def read() -> None:
        async with contextlib.aclosing(watch_events(stub, request, batched=True)) as events:
            async for event in events:
                got.append(event)
                if event.sequence == 40:
                    return

    reader = asyncio.ensure_future(read())
    await add_many(stub, 10, start=30)
    await asyncio.wait_for(reader, WAIT)
    assert sequences(got) == list(range(11, 41))
