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
    WAIT,
    add,
    add_many,
    log_head,
    read_events,
    read_to_error,
    sequences,
    subscribe,
    subscribe_live,
)

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
