"""Domain tasks and events of a chosen encoded size, for the micro-benchmarks."""

from __future__ import annotations

import uuid

from rigger_server import wire
from rigger_server.domain import (
    Event,
    EventDraft,
    EventType,
    Task,
    TaskStatus,
    commit_event,
    now_rfc3339,
)

from bench import payload


def task(payload_bytes: int, stamp: int = 0) -> Task:
    """A fresh TODO task whose title pads its CREATED event to about `payload_bytes`."""
    now = now_rfc3339()
    return Task(
        id=str(uuid.uuid4()),
        title=payload.title(stamp, payload_bytes),
        status=TaskStatus.TODO,
        created_at=now,
        updated_at=now,
        version=1,
    )


def draft(created: Task) -> EventDraft:
    """The CREATED event of a task, before commit."""
    return EventDraft(
        event_id=str(uuid.uuid4()),
        timestamp=created.created_at,
        event_type=EventType.CREATED,
        task=created,
    )


def event(payload_bytes: int, sequence: int = 1) -> Event:
    """A committed CREATED event of about `payload_bytes` encoded."""
    return commit_event(draft(task(payload_bytes)), sequence, wire.encode_event)
