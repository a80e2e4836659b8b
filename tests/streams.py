"""Helpers for tests that read event streams: bounded waits, never sleeps.

Every read here is bounded by a timeout (`within`, default WAIT). A timed-out
read fails the test and, as grpc.aio does, cancels the call it was reading.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

import grpc
import pytest
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc

WAIT = 10.0
"""Seconds any single expectation about a stream may take before the test fails."""

CREATED = pb.TASK_EVENT_TYPE_CREATED
UPDATED = pb.TASK_EVENT_TYPE_UPDATED
DELETED = pb.TASK_EVENT_TYPE_DELETED
STATUS_CHANGED = pb.TASK_EVENT_TYPE_STATUS_CHANGED
ASSIGNED = pb.TASK_EVENT_TYPE_ASSIGNED


def sequences(events: Iterable[pb.TaskEvent]) -> list[int]:
    """The sequence numbers of `events`, in order."""
    return [e.sequence for e in events]


def subscribe_request(
    *,
    event_types: Iterable[int] = (),
    assignee: str | None = None,
    after: int | None = None,
) -> pb.SubscribeToTaskEventsRequest:
    """A SubscribeToTaskEventsRequest with only the given fields present."""
    request = pb.SubscribeToTaskEventsRequest(event_types=list(event_types))
    if assignee is not None:
        request.assignee_filter = assignee
    if after is not None:
        request.after_sequence = after
    return request


def subscribe(
    stub: rigger_pb2_grpc.RiggerServiceStub,
    *,
    event_types: Iterable[int] = (),
    assignee: str | None = None,
    after: int | None = None,
) -> Any:
    """Open SubscribeToTaskEvents. With `after`, the subscription has no registration race:
    everything committed after that sequence is delivered, whenever the server registers it."""
    return stub.SubscribeToTaskEvents(
        subscribe_request(event_types=event_types, assignee=assignee, after=after)
    )


async def read_events(call: Any, count: int, within: float = WAIT) -> list[pb.TaskEvent]:
    """Read exactly `count` events; fail if the stream ends or stalls first."""

    async def read() -> list[pb.TaskEvent]:
        events: list[pb.TaskEvent] = []
        while len(events) < count:
            event = await call.read()
            if event is grpc.aio.EOF:
                raise AssertionError(f"stream ended after {len(events)} of {count} events")
            events.append(event)
        return events

    return await asyncio.wait_for(read(), within)


async def read_to_error(
    call: Any, within: float = WAIT
) -> tuple[list[pb.TaskEvent], grpc.aio.AioRpcError]:
    """Read until the stream fails; return the events read and the error.

    Fails the test if the stream ends with OK instead.
    """

    async def read() -> tuple[list[pb.TaskEvent], grpc.aio.AioRpcError]:
        events: list[pb.TaskEvent] = []
        try:
            while True:
                event = await call.read()
                if event is grpc.aio.EOF:
                    raise AssertionError(f"stream ended OK after {len(events)} events")
                events.append(event)
        except grpc.aio.AioRpcError as error:
            return events, error

    return await asyncio.wait_for(read(), within)


HEAD_SEQUENCE = "rigger-head-sequence"


async def subscribe_live(
    stub: rigger_pb2_grpc.RiggerServiceStub,
    *,
    event_types: Iterable[int] = (),
    assignee: str | None = None,
    within: float = WAIT,
) -> Any:
    """Open a live-only subscription and return once the server has registered it.

    The server sends the stream's headers (with `rigger-head-sequence`) only once
    the subscription is registered, so every event committed after this returns
    is delivered.
    """
    call = subscribe(stub, event_types=event_types, assignee=assignee)
    metadata = await asyncio.wait_for(call.initial_metadata(), within)
    assert HEAD_SEQUENCE in dict(metadata), metadata
    return call


async def log_head(stub: rigger_pb2_grpc.RiggerServiceStub) -> int:
    """The sequence of the newest committed event, from a subscription's headers."""
    call = subscribe(stub)
    try:
        metadata = dict(await asyncio.wait_for(call.initial_metadata(), WAIT))
    finally:
        call.cancel()
    return int(metadata[HEAD_SEQUENCE])


async def assert_no_events_after(stub: rigger_pb2_grpc.RiggerServiceStub, sequence: int) -> None:
    """Assert that the event log ends at `sequence`.

    Adds a marker task, then replays from `sequence`: the first event must be the
    marker's CREATED at `sequence + 1`. No sleeping: if anything else had been
    logged it would come first.
    """
    marker = (await stub.AddTask(pb.AddTaskRequest(title="log-end marker"))).task
    call = subscribe(stub, after=sequence)
    try:
        (event,) = await read_events(call, 1)
    finally:
        call.cancel()
    assert (event.event_type, event.task.id) == (CREATED, marker.id), (
        f"an event was logged after sequence {sequence}: {event}"
    )
    assert event.sequence == sequence + 1


async def replay_all(
    stub: rigger_pb2_grpc.RiggerServiceStub, count: int, within: float = WAIT
) -> list[pb.TaskEvent]:
    """The first `count` events of the log, replayed from the start."""
    call = subscribe(stub, after=0)
    try:
        return await read_events(call, count, within)
    finally:
        call.cancel()


async def fails(call: Any, code: grpc.StatusCode, *words: str) -> str:
    """Await a call that must fail with `code`, its details naming every word; the details."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    error = caught.value
    assert error.code() == code, f"{error.code()}: {error.details()}"
    for word in words:
        assert word in error.details(), error.details()
    return error.details()


def trailing(error: grpc.aio.AioRpcError, key: str) -> str | None:
    """One trailing metadata value of a failed call, or None."""
    for k, v in error.trailing_metadata() or ():
        if k == key:
            return v
    return None


# ~1 kB per event, so a few hundred events fill HTTP/2 flow-control windows.
PADDING = "x" * 1000


async def add(stub, title="A task", **fields) -> pb.Task:
    """Add a task and return it."""
    return (await stub.AddTask(pb.AddTaskRequest(title=title, **fields))).task


async def add_many(stub, count: int, *, start: int = 0, padded: bool = False) -> None:
    """Add `count` tasks, up to 25 at a time."""
    for chunk in range(start, start + count, 25):
        await asyncio.gather(
            *(
                add(stub, f"task {i} {PADDING if padded else ''}")
                for i in range(chunk, min(chunk + 25, start + count))
            )
        )


async def all_tasks(stub: rigger_pb2_grpc.RiggerServiceStub) -> list[bytes]:
    """Every stored task (archived included), serialized, for before/after comparisons."""
    live = await stub.ListTasks(pb.ListTasksRequest())
    archived = await stub.ListTasks(pb.ListTasksRequest(status=pb.TASK_STATUS_ARCHIVED))
    return sorted(t.SerializeToString(deterministic=True) for t in (*live.tasks, *archived.tasks))


def kinds(events: Iterable[pb.TaskEvent]) -> list[str]:
    """Event types by name, for readable assertions."""
    return [pb.TaskEventType.Name(e.event_type) for e in events]


async def read_until(
    call: Any, done: Callable[[pb.TaskEvent], bool], within: float = WAIT
) -> list[pb.TaskEvent]:
    """Read events up to and including the first one for which `done` is true."""

    async def read() -> list[pb.TaskEvent]:
        events: list[pb.TaskEvent] = []
        while True:
            event = await call.read()
            if event is grpc.aio.EOF:
                raise AssertionError(f"stream ended after {len(events)} events")
            events.append(event)
            if done(event):
                return events

    return await asyncio.wait_for(read(), within)
