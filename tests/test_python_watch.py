"""The Python client's watch helper against a real server."""

from __future__ import annotations

import asyncio
import contextlib

from rigger.v1 import rigger_pb2 as pb
from rigger_client.watch import watch_events
from streams import WAIT, add_many, log_head, sequences


async def test_the_watch_helper_reads_batches_one_event_at_a_time(shared_stub):
    start = await log_head(shared_stub)
    await add_many(shared_stub, 30)
    request = pb.SubscribeToTaskEventsRequest(after_sequence=start + 10)
    got: list[pb.TaskEvent] = []

    async def read() -> None:
        events = watch_events(shared_stub, request, batched=True)
        async with contextlib.aclosing(events):
            async for event in events:
                got.append(event)
                if event.sequence == start + 40:
                    return

    reader = asyncio.ensure_future(read())
    await add_many(shared_stub, 10, start=30)
    await asyncio.wait_for(reader, WAIT)
    assert sequences(got) == list(range(start + 11, start + 41))
