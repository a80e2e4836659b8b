"""Replay with `after_sequence`, the hand-over from replay to live, and lagging subscribers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc
from serverproc import ServerProcess
from streams import (
    ASSIGNED,
    CREATED,
    WAIT,
    add,
    add_many,
    read_events,
    read_to_error,
    replay_all,
    sequences,
    subscribe,
    subscribe_live,
    trailing,
)

IN_PROGRESS = pb.TASK_STATUS_IN_PROGRESS
# A client that stops reading: a small, fixed HTTP/2 receive window, so the
# server soon cannot send it any more.
STALLED = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 16384)]


@pytest.fixture
def lag_server(project):
    """A server whose subscribers may fall only 5 events behind."""
    proc = ServerProcess(project, extra_args=("--buffer", "5")).start()
    yield proc
    proc.stop()


@pytest.fixture
async def lag_stub(lag_server) -> AsyncIterator[rigger_pb2_grpc.RiggerServiceStub]:
    async with grpc.aio.insecure_channel(lag_server.address) as channel:
        yield rigger_pb2_grpc.RiggerServiceStub(channel)


# --- replay ---------------------------------------------------------------------


async def test_after_sequence_replays_later_events_then_goes_live(stub):
    for i in range(3):
        await add(stub, f"before {i}")
    call = subscribe(stub, after=1)
    replayed = await read_events(call, 2)
    live = await add(stub, "after")
    (next_event,) = await read_events(call, 1)
    call.cancel()
    assert sequences(replayed) == [2, 3]
    assert (next_event.sequence, next_event.task.id) == (4, live.id)


async def test_after_sequence_zero_replays_the_whole_log(stub):
    task = await add(stub)
    await stub.UpdateTask(pb.UpdateTaskRequest(task_id=task.id, status=IN_PROGRESS))
    await stub.DeleteTask(pb.DeleteTaskRequest(task_id=task.id))
    events = await replay_all(stub, 4)
    assert sequences(events) == [1, 2, 3, 4]


async def test_after_sequence_at_the_newest_event_replays_nothing_and_goes_live(stub):
    for i in range(2):
        await add(stub, f"before {i}")
    call = subscribe(stub, after=2)
    await asyncio.wait_for(call.initial_metadata(), WAIT)
    live = await add(stub, "after")
    (event,) = await read_events(call, 1)
    call.cancel()
    assert (event.sequence, event.task.id) == (3, live.id)


async def test_replayed_events_are_identical_to_the_live_ones(stub):
    call = await subscribe_live(stub)
    parent = await add(stub, "parent", assignee="alice", due_date="2025-03-04")
    await add(stub, "child", parent_task_id=parent.id, source_prd_id="prd-1")
    await stub.UpdateTask(
        pb.UpdateTaskRequest(task_id=parent.id, status=IN_PROGRESS, assignee="bob")
    )
    await stub.DeleteTask(pb.DeleteTaskRequest(task_id=parent.id))
    live = await read_events(call, 6)
    call.cancel()
    replayed = await replay_all(stub, 6)
    assert [e.SerializeToString(deterministic=True) for e in replayed] == [
        e.SerializeToString(deterministic=True) for e in live
    ]


async def test_replay_applies_the_filters(stub):
    alices = await add(stub, "alice's", assignee="alice")
    await add(stub, "bob's", assignee="bob")
    await stub.UpdateTask(pb.UpdateTaskRequest(task_id=alices.id, assignee="carol"))
    await stub.UpdateTask(pb.UpdateTaskRequest(task_id=alices.id, assignee="alice"))
    call = subscribe(stub, after=0, event_types=[CREATED, ASSIGNED], assignee="alice")
    replayed = await read_events(call, 2)
    end = await add(stub, "end", assignee="alice")
    (live,) = await read_events(call, 1)
    call.cancel()
    assert [(e.sequence, e.event_type) for e in replayed] == [(1, CREATED), (6, ASSIGNED)]
    assert replayed[1].metadata["previous_assignee"] == "carol"
    assert live.task.id == end.id


async def test_replay_hands_over_to_live_without_gap_or_duplicate_while_writes_happen(stub):
    total = 600  # more than one replay page (500), half written before subscribing
    halfway = asyncio.Event()

    async def writer() -> None:
        await add_many(stub, total // 2)
        halfway.set()
        await add_many(stub, total // 2, start=total // 2)

    writing = asyncio.ensure_future(writer())
    try:
        await asyncio.wait_for(halfway.wait(), WAIT)
        call = subscribe(stub, after=0)
        events = await read_events(call, total, within=3 * WAIT)
        await writing
    finally:
        writing.cancel()
    end = await add(stub, "end")
    (last,) = await read_events(call, 1)
    call.cancel()
    assert sequences(events) == list(range(1, total + 1))
    assert (last.sequence, last.task.id) == (total + 1, end.id)


async def test_several_replaying_subscribers_racing_writes_each_see_the_log_once(stub):
    total = 200
    calls = []

    async def subscribe_meanwhile() -> None:
        for _ in range(4):
            calls.append(subscribe(stub, after=0))
            await add(stub, "from the subscriber side")

    await asyncio.gather(add_many(stub, total - 4), subscribe_meanwhile())
    seen = await asyncio.gather(*(read_events(call, total) for call in calls))
    for call in calls:
        call.cancel()
    for events in seen:
        assert sequences(events) == list(range(1, total + 1))


# --- lagging subscribers --------------------------------------------------------


async def test_a_subscriber_that_falls_behind_is_ended_with_resource_exhausted(
    lag_server, lag_stub
):
    async with grpc.aio.insecure_channel(lag_server.address, options=STALLED) as channel:
        call = subscribe(rigger_pb2_grpc.RiggerServiceStub(channel), after=0)
        await asyncio.wait_for(call.initial_metadata(), WAIT)
        # A first commit smaller than the 5-event buffer reaches the stream's
        # window; the burst after it (committed in groups) overflows it.
        await add_many(lag_stub, 4, padded=True)
        await add_many(lag_stub, 396, start=4, padded=True)
        events, error = await read_to_error(call)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert events, "some events fit in the window before the subscriber fell behind"
    last = events[-1].sequence
    assert sequences(events) == list(range(1, last + 1))
    assert f"last sequence received: {last}" in error.details()
    assert trailing(error, "rigger-last-sequence") == str(last)


async def test_resubscribing_after_a_lag_with_after_sequence_loses_nothing(lag_server, lag_stub):
    async with grpc.aio.insecure_channel(lag_server.address, options=STALLED) as channel:
        call = subscribe(rigger_pb2_grpc.RiggerServiceStub(channel), after=0)
        await asyncio.wait_for(call.initial_metadata(), WAIT)
        await add_many(lag_stub, 400, padded=True)
        _, error = await read_to_error(call)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    last = int(trailing(error, "rigger-last-sequence"))
    resumed = subscribe(lag_stub, after=last)
    events = await read_events(resumed, 400 - last)
    resumed.cancel()
    assert sequences(events) == list(range(last + 1, 401))


async def test_a_live_only_subscriber_that_falls_behind_names_its_last_sequence(
    lag_server, lag_stub
):
    await add_many(lag_stub, 3)
    async with grpc.aio.insecure_channel(lag_server.address, options=STALLED) as channel:
        call = await subscribe_live(rigger_pb2_grpc.RiggerServiceStub(channel))
        await add_many(lag_stub, 400, start=3, padded=True)
        events, error = await read_to_error(call)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    last = events[-1].sequence if events else 3
    assert sequences(events) == list(range(4, last + 1))
    assert trailing(error, "rigger-last-sequence") == str(last)


async def test_a_stalled_subscriber_does_not_hold_back_a_healthy_one(server, stub):
    async with grpc.aio.insecure_channel(server.address, options=STALLED) as channel:
        stalled = subscribe(rigger_pb2_grpc.RiggerServiceStub(channel), after=0)
        await asyncio.wait_for(stalled.initial_metadata(), WAIT)
        healthy = subscribe(stub, after=0)
        await asyncio.wait_for(add_many(stub, 300, padded=True), WAIT)
        received = await read_events(healthy, 300)
        healthy.cancel()
        # The stalled subscriber held its stream open without reading and, being
        # within its buffer, still gets everything.
        held = await read_events(stalled, 300)
        stalled.cancel()
    assert sequences(received) == list(range(1, 301))
    assert sequences(held) == list(range(1, 301))


async def test_a_subscriber_that_resumes_after_every_lag_receives_the_whole_log_once(
    lag_stub,
):
    total = 300
    writing = asyncio.ensure_future(add_many(lag_stub, total, padded=True))
    received: list[int] = []
    try:
        while not received or received[-1] < total:
            call = subscribe(lag_stub, after=received[-1] if received else 0)
            try:
                while not received or received[-1] < total:
                    (event,) = await read_events(call, 1)
                    received.append(event.sequence)
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
                last = received[-1] if received else 0
                assert trailing(error, "rigger-last-sequence") == str(last)
            finally:
                call.cancel()
        await writing
    finally:
        writing.cancel()
    assert received == list(range(1, total + 1))
