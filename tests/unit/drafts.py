"""Tasks, events and readings of a subscription, for the in-process tests."""

from __future__ import annotations

import asyncio
import uuid

from rigger.v1 import rigger_pb2 as pb
from rigger_server.domain import Event, EventDraft, EventType, Task, TaskStatus, now_rfc3339
from rigger_server.events import Subscription

WAIT = 5.0
"""Seconds any single expectation may take before the test fails."""


def new_task(title: str = "a task", **fields: object) -> Task:
    """A task at version 1, as AddTask would make it."""
    now = now_rfc3339()
    return Task(str(uuid.uuid4()), title, TaskStatus.TODO, now, now, 1, **fields)  # type: ignore[arg-type]


def created(task: Task) -> list[EventDraft]:
    """The CREATED event for `task`, not yet committed."""
    return [EventDraft(str(uuid.uuid4()), task.created_at, EventType.CREATED, task)]


def decoded(events: list[Event]) -> list[pb.TaskEvent]:
    """The events as subscribers receive them."""
    return [pb.TaskEvent.FromString(e.payload) for e in events]


async def published(subscription: Subscription) -> list[pb.TaskEvent]:
    """The next batch `subscription` receives, decoded."""
    return decoded(await asyncio.wait_for(subscription.next_batch(), WAIT))


def sequences(events: list[Event] | list[pb.TaskEvent]) -> list[int]:
    """The sequence numbers of `events`, in order."""
    return [e.sequence for e in events]
