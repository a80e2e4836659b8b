"""Batch messages are capped by bytes, so a batched subscriber can always read its stream."""

from __future__ import annotations

import asyncio

import grpc
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc
from rigger_client.watch import watch_events
from rigger_server.limits import MAX_BATCH_MESSAGE_BYTES

# Events whose sum is over the 4 MiB a client accepts by default.
BIG_TITLE = "x" * 120_000
BIG_EVENTS = 40


def decoded(messages: list[bytes]) -> list[bytes]:
    events = []
    for message in messages:
        parsed = pb.SubscribeToTaskEventBatchesResponse.FromString(message)
        events.extend(event.SerializeToString() for event in parsed.events)
    return events


async def add_big_tasks(stub: rigger_pb2_grpc.RiggerServiceStub) -> None:
    for i in range(BIG_EVENTS):
        await stub.AddTask(pb.AddTaskRequest(title=f"{i} {BIG_TITLE}"))


async def test_a_replay_larger_than_a_client_accepts_arrives_in_capped_messages(stub):
    await add_big_tasks(stub)
    call = stub.SubscribeToTaskEventBatches(pb.SubscribeToTaskEventBatchesRequest(after_sequence=0))
    sequences: list[int] = []
    while len(sequences) < BIG_EVENTS:
        batch = await asyncio.wait_for(call.read(), 30)
        assert batch is not grpc.aio.EOF
        assert batch.ByteSize() <= MAX_BATCH_MESSAGE_BYTES
        sequences.extend(event.sequence for event in batch.events)
    call.cancel()
    assert sequences == list(range(1, BIG_EVENTS + 1))


async def test_the_batched_watch_helper_receives_a_large_replay(stub):
    await add_big_tasks(stub)
    seen: list[int] = []

    async def watch() -> None:
        request = pb.SubscribeToTaskEventsRequest(after_sequence=0)
        async for event in watch_events(stub, request, batched=True):
            seen.append(event.sequence)
            if len(seen) == BIG_EVENTS:
                return

    await asyncio.wait_for(watch(), 60)
    assert seen == list(range(1, BIG_EVENTS + 1))
