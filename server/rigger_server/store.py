"""The storage interface: tasks, the event log, PRDs, enhancements and tests, one protocol.

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
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from rigger_server.domain import (
    ComprehensionTestRecord,
    EnhancementRecord,
    Event,
    EventDraft,
    Prd,
    Task,
    TaskStatus,
)


@dataclasses.dataclass(frozen=True, slots=True)
class TaskQuery:
    """Filters for listing tasks; every filter that is set must match."""

    status: TaskStatus | None = None
    assignee: str | None = None
    limit: int | None = None
    offset: int = 0

    def sql_condition(self, placeholder: str, column_prefix: str = "") -> tuple[str, list[object]]:
        """The filters as an SQL condition and its arguments, for either SQL backend.

        `placeholder` is the driver's (`?` or `%s`); `column_prefix` qualifies
        the columns (`t.`). Archived tasks match only when the status asks for them.
        """
        if self.status is None:
            conditions = [f"{column_prefix}status != {placeholder}"]
            args: list[object] = [int(TaskStatus.ARCHIVED)]
        else:
            conditions = [f"{column_prefix}status = {placeholder}"]
            args = [int(self.status)]
        if self.assignee is not None:
            conditions.append(f"{column_prefix}assignee = {placeholder}")
            args.append(self.assignee)
        return " AND ".join(conditions), args


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

    def insert_tasks(self, tasks: Sequence[Task], events: Sequence[EventDraft]) -> list[Event]:
        """Insert new tasks, in order, and append the events, all in one transaction.

        A task may name an earlier one of `tasks` as its parent or dependency.
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

    def replace_statuses(
        self, changes: Sequence[tuple[Task, int]], events: Sequence[EventDraft]
    ) -> list[Event]:
        """Store each (task, expected_version)'s new status, version and updated_at.

        Nothing else of each task may have changed: only those columns are
        written, in a few statements for any number of tasks. If any task is
        no longer at its expected version, raise errors.VersionConflict and
        change nothing. The events are appended in the same transaction.
        """
        ...

    def atomic(
        self, before_commit: Callable[[], None] | None = None
    ) -> AbstractContextManager[object]:
        """Writes made inside commit together when it exits, or not at all if it raises.

        Nested inside another `atomic()`, only the inner writes are undone on
        an exception, and nothing commits before the outermost one exits.
        The outermost one calls `before_commit` after its last statement,
        right before COMMIT; if it raises, nothing is written.
        """
        ...

    def events_after(self, sequence: int, limit: int, max_bytes: int | None = None) -> list[Event]:
        """Return up to `limit` committed events with a greater sequence, in order, with bytes.

        With `max_bytes`, no event follows once their payloads reach it (so
        they hold at most `max_bytes` plus one event; the first always comes).
        """
        ...

    def last_sequence(self) -> int:
        """Return the sequence of the newest committed event, 0 when the log is empty."""
        ...

    def insert_prd(self, prd: Prd) -> None:
        """Store a parsed PRD, with its markdown and resolved path when it has them."""
        ...

    def get_prd(self, prd_id: str) -> Prd | None:
        """Return the stored PRD (markdown included), or None if there is no such id."""
        ...

    def tasks_of_prd(self, prd: Prd) -> list[Task]:
        """Every task of a PRD, archived ones too, oldest first.

        A task is the PRD's when its source_prd_id is `prd.id`, or the id of
        any stored PRD with the same `resolved_path` (when that is not None):
        PRDs parsed from one file are one PRD. `prd` need not be stored.
        """
        ...

    def insert_enhancement(self, enhancement: EnhancementRecord) -> None:
        """Store an enhancement of an existing task."""
        ...

    def enhancements_of(self, task_id: str) -> list[EnhancementRecord]:
        """The task's stored enhancements, oldest first."""
        ...

    def insert_comprehension_test(self, test: ComprehensionTestRecord) -> None:
        """Store a comprehension test of an existing task."""
        ...

    def comprehension_tests_of(self, task_id: str) -> list[ComprehensionTestRecord]:
        """The task's stored comprehension tests, oldest first."""
        ...

    def close(self) -> None:
        """Flush and release everything; the store is unusable afterwards."""
        ...
