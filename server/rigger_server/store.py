"""The storage interface: tasks, the event log and PRDs behind one small protocol.

A store is synchronous and used from one writer thread plus any number of
reader threads; the async layer above keeps it off the event loop. Every write
commits the task change and its events in one transaction, so the event log
can never disagree with the tasks it describes. The store gives each event its
gapless sequence and keeps the event's bytes as the encoder it was built with
made them (`domain.EventEncoder`), so it knows nothing of any wire format.

A store reports storage trouble as `errors.StoreFault`s: `DiskFull`,
`StoreUnavailable` (locked, unreadable, read-only), `StoreGone` (the database
was deleted or replaced under it; checked before every commit).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from rigger_server.domain import Event, EventDraft, Prd, Task, TaskStatus


@dataclasses.dataclass(frozen=True, slots=True)
class TaskQuery:
    """Filters for listing tasks; every filter that is set must match."""

    status: TaskStatus | None = None
    assignee: str | None = None
    limit: int | None = None
    offset: int = 0


class Store(Protocol):
    """What Rigger needs from storage."""

    def get_task(self, task_id: str) -> Task | None:
        """Return the task, or None if there is no such id."""
        ...

    def list_tasks(self, query: TaskQuery) -> tuple[list[Task], int]:
        """Return one page of matching tasks, newest first, and the total match count."""
        ...

    def insert_task(self, task: Task, events: Sequence[EventDraft]) -> list[Event]:
        """Insert a new task and append its events, atomically."""
        ...

    def subtask_count(self, task_id: str) -> int | None:
        """How many subtasks the task has, or None if there is no such task.

        Answered without reading the subtasks: adding one must cost the same
        however many its parent already has.
        """
        ...

    def replace_task(
        self, task: Task, expected_version: int, events: Sequence[EventDraft]
    ) -> list[Event]:
        """Replace a task only if its stored version is `expected_version`.

        Otherwise raise errors.VersionConflict and change nothing. The task's
        events are appended in the same transaction.
        """
        ...

    def atomic(self) -> AbstractContextManager[object]:
        """Writes made inside commit together when it exits, or not at all if it raises.

        Nested inside another `atomic()`, only the inner writes are undone on
        an exception, and nothing commits before the outermost one exits.
        """
        ...

    def events_after(self, sequence: int, limit: int) -> list[Event]:
        """Return up to `limit` committed events with a greater sequence, in order, with bytes."""
        ...

    def last_sequence(self) -> int:
        """Return the sequence of the newest committed event, 0 when the log is empty."""
        ...

    def insert_prd(self, prd: Prd) -> None:
        """Store a parsed PRD."""
        ...

    def close(self) -> None:
        """Flush and release everything; the store is unusable afterwards."""
        ...
