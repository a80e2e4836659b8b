"""The task domain: tasks, events and parsed PRDs, free of any wire format."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import uuid
from collections.abc import Callable

from rigger_server.errors import EventTooLarge, quoted
from rigger_server.limits import MAX_EVENT_BYTES


class TaskStatus(enum.IntEnum):
    """Where a task stands. Numbers match rigger.v1.TaskStatus."""

    UNSPECIFIED = 0
    TODO = 1
    IN_PROGRESS = 2
    PENDING_ENHANCEMENT = 3
    PENDING_COMPREHENSION_TEST = 4
    PENDING_FOLLOW_ON = 5
    PENDING_DECOMPOSITION = 6
    DECOMPOSED = 7
    ORCHESTRATION_COMPLETE = 8
    COMPLETED = 9
    ARCHIVED = 10

    @property
    def contract_name(self) -> str:
        """The name clients print, as in the contract (`TASK_STATUS_TODO`)."""
        return f"TASK_STATUS_{self.name}"


class EventType(enum.IntEnum):
    """What kind of change an event reports. Numbers match rigger.v1.TaskEventType."""

    UNSPECIFIED = 0
    CREATED = 1
    UPDATED = 2
    DELETED = 3
    STATUS_CHANGED = 4
    ASSIGNED = 5
    DECOMPOSED = 6
    ORCHESTRATED = 7


@dataclasses.dataclass(frozen=True, slots=True)
class Task:
    """One unit of work, as stored."""

    id: str
    title: str
    status: TaskStatus
    created_at: str
    updated_at: str
    version: int
    assignee: str | None = None
    due_date: str | None = None
    source_transcript_id: str | None = None
    source_prd_id: str | None = None
    parent_task_id: str | None = None
    subtask_ids: tuple[str, ...] = ()
    complexity: int | None = None
    reasoning: str | None = None
    context_files: tuple[str, ...] = ()
    dependencies: tuple[str, ...] = ()
    # The PRD item a generation made the task for, and what it planned then
    # (planner/regeneration.py: JSON the server alone reads, never on the
    # wire), so that generating the PRD again finds the task even after it
    # was renamed; None for tasks no generation made.
    prd_item: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class EventDraft:
    """An event about to be committed: everything but its place in the log."""

    event_id: str
    timestamp: str
    event_type: EventType
    task: Task
    actor: str | None = None
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def new(cls, event_type: EventType, task: Task, timestamp: str, **metadata: str) -> EventDraft:
        """A fresh event (a new UUID) about `task` as it is after the change."""
        return cls(str(uuid.uuid4()), timestamp, event_type, task, metadata=metadata)


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """A committed event as the log keeps it: its place, what a filter needs, and its bytes.

    `payload` is the event encoded once for the wire, when it was committed;
    every publisher and every replay sends exactly these bytes, so nobody
    encodes an event twice.
    """

    sequence: int
    event_type: EventType
    task_id: str
    assignee: str | None
    payload: bytes


# Encodes a draft, at its place in the log, into the bytes every subscriber receives.
EventEncoder = Callable[[EventDraft, int], bytes]


def commit_event(
    draft: EventDraft, sequence: int, encode: EventEncoder, *, bounded: bool = True
) -> Event:
    """Give a draft its place in the log and its bytes.

    Every store makes each new event here, so this is where the log refuses
    an event larger than MAX_EVENT_BYTES: stored, it would reach no client
    with default settings, and every resuming stream would stop at it for
    ever. `bounded=False` is for migrating events already in the log.
    """
    payload = encode(draft, sequence)
    if bounded and len(payload) > MAX_EVENT_BYTES:
        raise EventTooLarge(
            f"the {draft.event_type.name} event about task {quoted(draft.task.id)} would be "
            f"{len(payload)} bytes; clients accept at most {MAX_EVENT_BYTES} bytes in one event, "
            "so nothing was written. Make the task smaller (title, context files, "
            "dependencies, subtasks)"
        )
    return Event(
        sequence=sequence,
        event_type=draft.event_type,
        task_id=draft.task.id,
        assignee=draft.task.assignee,
        payload=payload,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Prd:
    """A parsed product requirements document."""

    id: str
    path: str
    title: str
    objectives: tuple[str, ...]
    tech_stack: tuple[str, ...]
    constraints: tuple[str, ...]
    parsed_at: str
    # The markdown as read, so that planning re-parses exactly what was
    # parsed; None for PRDs stored before the text was kept.
    markdown: str | None = None
    # The file it was read from, relative to the project root with symlinks
    # resolved: PRDs parsed from one file share it (see Store.tasks_of_prd).
    resolved_path: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class EnhancementRecord:
    """An enhancement OrchestrateTask made for a task, as stored."""

    id: str
    task_id: str
    timestamp: str
    enhancement_type: str
    content: str
    planner: str
    model: str


@dataclasses.dataclass(frozen=True, slots=True)
class ComprehensionTestRecord:
    """A comprehension test OrchestrateTask made for a task, as stored."""

    id: str
    task_id: str
    timestamp: str
    test_type: str
    question: str
    options: tuple[str, ...]
    correct_answer: str
    planner: str
    model: str


def now_rfc3339() -> str:
    """The current UTC time as RFC 3339 with microseconds, e.g. 2026-01-02T03:04:05.678901Z."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
