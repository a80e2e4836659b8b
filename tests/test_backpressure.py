"""Streams under HTTP/2 flow control: a client that stops reading holds back nobody.

These need a real socket whose receive window fills, which no conformance
executor can stage; what a lagging subscriber is told lives in the
conformance suite (`subscribe_lagging_subscriber_is_resource_exhausted`).
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc
from streams import (
    ASSIGNED,
    HEAD_SEQUENCE,
    WAIT,
    add,
    add_many,
    log_head,
    read_events,
    read_to_error,
    sequences,
    subscribe,
    subscribe_live,
    trailing,
)

from testkit.serverproc import ServerProcess

# A client that stops reading: a small, fixed HTTP/2 receive window, so the
# server soon cannot send it any more.
STALLED = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 16384)]


@pytest.fixture
def stub(shared_stub):
    """A client of the module's shared server: tests start from the log head they find."""
    return shared_stub


async def test_a_stalled_subscriber_does_not_hold_back_a_healthy_one(shared_server, stub):
    start = await log_head(stub)
    async with grpc.aio.insecure_channel(shared_server.address, options=STALLED) as channel:
        stalled = subscribe(rigger_pb2_grpc.RiggerServiceStub(channel), after=start)
        await asyncio.wait_for(stalled.initial_metadata(), WAIT)
        healthy = subscribe(stub, after=start)
        await asyncio.wait_for(add_many(stub, 300, padded=True), WAIT)
        received = await read_events(healthy, 300)
        healthy.cancel()
        # The stalled subscriber held its stream open without reading and, being
        # within its buffer, still gets everything.
        held = await read_events(stalled, 300)
        stalled.cancel()
    expected = list(range(start + 1, start + 301))
    assert sequences(received) == expected
    assert sequences(held) == expected


# As many stalled batched subscribers as the server has turns (--batch-turns,
# default 8), each filtering on an assignee whose events are too large for the
# client's window: every one of them takes a turn and its send never completes.
TURNS = 8
HOG = "hog"
HOG_TITLE = "h" * 100_000


async def read_batched_events(call, count: int) -> list[pb.TaskEvent]:
    """Read batches until `count` events arrived; fail if the stream ends or stalls first."""

    async def read() -> list[pb.TaskEvent]:
        events: list[pb.TaskEvent] = []
        while len(events) < count:
            batch = await call.read()
            if batch is grpc.aio.EOF:
                raise AssertionError(f"stream ended after {len(events)} of {count} events")
            events.extend(batch.events)
        return events

    return await asyncio.wait_for(read(), WAIT)


@pytest.fixture
def turns_server(project):
    """A server of its own: stalled streams that hold turns would slow the module's others."""
    proc = ServerProcess(project, extra_args=("--batch-turns", str(TURNS))).start()
    yield proc
    proc.stop()


async def test_stalled_batched_subscribers_do_not_keep_the_turns_from_the_others(turns_server):
    server = turns_server
    channels = [grpc.aio.insecure_channel(server.address, options=STALLED) for _ in range(TURNS)]
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = rigger_pb2_grpc.RiggerServiceStub(channel)
        hogs = [
            rigger_pb2_grpc.RiggerServiceStub(c).SubscribeToTaskEventBatches(
                pb.SubscribeToTaskEventBatchesRequest(assignee_filter=HOG)
            )
            for c in channels
        ]
        for hog in hogs:
            await asyncio.wait_for(hog.initial_metadata(), WAIT)
        # The first one publishes; every hog gets a turn then, and its send stalls.
        for i in range(4):
            await add(stub, f"{i} {HOG_TITLE}", assignee=HOG)
        ordinary = stub.SubscribeToTaskEventBatches(pb.SubscribeToTaskEventBatchesRequest())
        head = int(dict(await asyncio.wait_for(ordinary.initial_metadata(), WAIT))[HEAD_SEQUENCE])
        await add_many(stub, 20)
        received = await read_batched_events(ordinary, 20)
        ordinary.cancel()
        for hog in hogs:
            hog.cancel()
    for c in channels:
        await c.close()
    assert sequences(received) == list(range(head + 1, head + 21))


async def test_a_failed_task_event_stream_update_is_reported_while_events_are_being_sent(
    shared_server, stub
):
    start = await log_head(stub)
    # 120 events of ~1 kB overflow a 16 kB receive window: once the first has
    # arrived, the server is busy sending the rest when the bad update comes in.
    await asyncio.gather(*(add(stub, f"{i} " + "x" * 1000) for i in range(120)))
    marker = await add(stub, "updated on the stream")
    assigned = await subscribe_live(stub, event_types=[ASSIGNED], assignee="z")
    async with grpc.aio.insecure_channel(shared_server.address, options=STALLED) as channel:
        call = rigger_pb2_grpc.RiggerServiceStub(channel).TaskEventStream()
        await call.write(
            pb.TaskEventStreamRequest(
                subscribe=pb.SubscribeToTaskEventsRequest(after_sequence=start)
            )
        )
        first = await read_events(call, 1)
        # Updates are applied in order: once the good one is published, the
        # server has moved on to the bad one while its sends are held up.
        await call.write(
            pb.TaskEventStreamRequest(update=pb.TaskUpdate(task_id=marker.id, assignee="z"))
        )
        await call.write(
            pb.TaskEventStreamRequest(
                update=pb.TaskUpdate(
                    task_id="00000000-0000-0000-0000-000000000000", status=pb.TASK_STATUS_COMPLETED
                )
            )
        )
        await read_events(assigned, 1)
        assigned.cancel()
        events, error = await read_to_error(call)
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert sequences(first + events) == list(range(start + 1, start + len(events) + 2))


BUDGET = 1024 * 1024
BIG_TITLE = "b" * 100_000


@pytest.fixture
def budget_server(project):
    """One subscriber at a time, which may queue 1 MiB of events, and (far beyond that) 1000."""
    args = ("--buffer", "1000", "--buffer-bytes", str(BUDGET), "--max-subscribers", "1")
    proc = ServerProcess(project, extra_args=args).start()
    yield proc
    proc.stop()


async def test_a_stalled_batched_subscriber_is_ended_once_its_events_outgrow_the_byte_budget(
    budget_server,
):
    async with (
        grpc.aio.insecure_channel(budget_server.address) as channel,
        grpc.aio.insecure_channel(budget_server.address, options=STALLED) as stalled_channel,
    ):
        stub = rigger_pb2_grpc.RiggerServiceStub(channel)
        stalled = rigger_pb2_grpc.RiggerServiceStub(stalled_channel).SubscribeToTaskEventBatches(
            pb.SubscribeToTaskEventBatchesRequest()
        )
        head = int(dict(await asyncio.wait_for(stalled.initial_metadata(), WAIT))[HEAD_SEQUENCE])
        # 40 events of 100 kB: 4 MB, four times the budget, and 40 of 1000 events.
        for i in range(40):
            await add(stub, f"{i} {BIG_TITLE}")
        # Ended, it has given back the server's one subscriber slot.
        probe = await subscribe_live(stub)
        probe.cancel()
        received: list[pb.TaskEvent] = []
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            while True:
                batch = await asyncio.wait_for(stalled.read(), WAIT)
                assert batch is not grpc.aio.EOF
                received.extend(batch.events)
    error = ended.value
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    last = head + len(received)
    assert f"{BUDGET} bytes of events behind" in error.details()
    assert f"after_sequence={last}" in error.details()
    assert trailing(error, "rigger-last-sequence") == str(last)
    assert sequences(received) == list(range(head + 1, last + 1))
    assert len(received) < 40
