"""Task operations: validation, the events each change emits, commit, then broadcast.

`TaskBook` is the domain's front door. It knows nothing of gRPC: the service
translates wire messages into these calls and domain errors into status codes.
SQLite work runs on a single writer thread and a small reader pool, never on
the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import pathlib
import re
import uuid
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from rigger_server import prd as prd_files
from rigger_server.domain import Event, EventDraft, EventType, Prd, Task, TaskStatus, now_rfc3339
from rigger_server.errors import InvalidArgument, NotFound, VersionConflict
from rigger_server.events import Broadcaster, EventFilter, Subscription
from rigger_server.limits import Limits
from rigger_server.store import Conflict, Store, TaskQuery
from rigger_server.writer import GroupWriter

T = TypeVar("T")

REPLAY_PAGE = 500
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclasses.dataclass(frozen=True, slots=True)
class NewTask:
    """What AddTask asks for."""

    title: str
    assignee: str | None = None
    due_date: str | None = None
    source_prd_id: str | None = None
    parent_task_id: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class TaskChange:
    """What UpdateTask asks for; None leaves a field alone."""

    task_id: str
    status: int | None = None
    assignee: str | None = None
    due_date: str | None = None
    title: str | None = None
    expected_version: int | None = None


def _check_length(value: str, field: str, limit: int) -> str:
    if len(value) > limit:
        raise InvalidArgument(field, f"is {len(value)} characters long; the limit is {limit}")
    return value


def _check_due_date(value: str) -> str:
    try:
        if not _DATE.fullmatch(value):
            raise ValueError(value)
        dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidArgument(
            "due_date", f"{value!r} is not a date of the form YYYY-MM-DD"
        ) from None
    return value


def check_status(value: int, field: str = "status") -> TaskStatus:
    """Turn a wire number into a TaskStatus, refusing unknown numbers."""
    try:
        return TaskStatus(value)
    except ValueError:
        raise InvalidArgument(field, f"unknown TaskStatus number {value}") from None


def check_event_type(value: int, field: str = "event_types") -> EventType:
    """Turn a wire number into an EventType, refusing unknown numbers."""
    try:
        return EventType(value)
    except ValueError:
        raise InvalidArgument(field, f"unknown TaskEventType number {value}") from None


def _draft(event_type: EventType, task: Task, timestamp: str, **metadata: str) -> EventDraft:
    return EventDraft(
        event_id=str(uuid.uuid4()),
        timestamp=timestamp,
        event_type=event_type,
        task=task,
        metadata=metadata,
    )


class TaskBook:
    """Validated task operations over a Store, broadcasting each committed event."""

    def __init__(
        self,
        store: Store,
        broadcaster: Broadcaster,
        project_root: pathlib.Path,
        *,
        limits: Limits | None = None,
        readers: int = 4,
        publish: Callable[[list[Event]], None] | None = None,
    ) -> None:
        self.store = store
        self.broadcaster = broadcaster
        self.project_root = project_root
        self.limits = limits or Limits()
        self._loop = asyncio.get_running_loop()
        # One writer thread: SQLite has one write lock anyway, and a single
        # thread publishes commits in exactly the order they happened.
        # `publish` receives each group's events on the loop, in commit order;
        # with several workers it is the log tail, which orders them among
        # the other workers' events.
        self._writer = GroupWriter(store, self._loop, publish or broadcaster.publish)
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="rigger-reader")

    async def _write(self, fn: Callable[..., T], *args: object) -> T:
        result: T = await self._writer.submit(fn, *args)
        return result

    async def _read(self, fn: Callable[..., T], *args: object) -> T:
        return await self._loop.run_in_executor(self._readers, fn, *args)

    def _publish(self, events: list[Event]) -> None:
        # Called on the writer thread right after a write; the events go out
        # once the write's group has committed.
        self._writer.emit(events)

    # --- validation ----------------------------------------------------------

    def _require_id(self, value: str, field: str) -> str:
        if not value.strip():
            raise InvalidArgument(field, "is required")
        return _check_length(value, field, self.limits.max_field_chars)

    def _check_title(self, value: str) -> str:
        if not value.strip():
            raise InvalidArgument("title", "must not be empty or whitespace")
        return _check_length(value, "title", self.limits.max_title_chars)

    def _check_field(self, value: str | None, field: str) -> None:
        if value is not None:
            _check_length(value, field, self.limits.max_field_chars)

    # --- reads ---------------------------------------------------------------

    async def get_task(self, task_id: str) -> Task:
        """Return a task by id."""
        self._require_id(task_id, "task_id")
        task = await self._read(self.store.get_task, task_id)
        if task is None:
            raise NotFound(f"task {task_id!r} not found")
        return task

    async def list_tasks(self, query: TaskQuery) -> tuple[list[Task], int]:
        """Return one page of matching tasks, newest first, and how many match in all."""
        return await self._read(self.store.list_tasks, query)

    async def last_sequence(self) -> int:
        """The sequence of the newest committed event, 0 when there is none."""
        return await self._read(self.store.last_sequence)

    # --- writes --------------------------------------------------------------

    async def add_task(self, new: NewTask) -> Task:
        """Create a task in TODO and emit CREATED."""
        self._check_title(new.title)
        self._check_field(new.assignee, "assignee")
        self._check_field(new.source_prd_id, "source_prd_id")
        if new.due_date is not None:
            _check_due_date(new.due_date)
        if new.parent_task_id is not None:
            self._require_id(new.parent_task_id, "parent_task_id")
        return await self._write(self._add_sync, new)

    def _add_sync(self, new: NewTask) -> Task:
        if new.parent_task_id is not None and self.store.get_task(new.parent_task_id) is None:
            raise NotFound(f"parent_task_id: task {new.parent_task_id!r} not found")
        now = now_rfc3339()
        task = Task(
            id=str(uuid.uuid4()),
            title=new.title,
            status=TaskStatus.TODO,
            created_at=now,
            updated_at=now,
            version=1,
            assignee=new.assignee or None,
            due_date=new.due_date,
            source_prd_id=new.source_prd_id,
            parent_task_id=new.parent_task_id,
        )
        self._publish(self.store.insert_task(task, [_draft(EventType.CREATED, task, now)]))
        return task

    async def update_task(self, change: TaskChange) -> Task:
        """Apply the fields that are set; emit UPDATED, STATUS_CHANGED and ASSIGNED as fitting."""
        self._require_id(change.task_id, "task_id")
        if change.status is not None and check_status(change.status) is TaskStatus.UNSPECIFIED:
            raise InvalidArgument("status", "TASK_STATUS_UNSPECIFIED is not a status to set")
        if change.title is not None:
            self._check_title(change.title)
        self._check_field(change.assignee, "assignee")
        if change.due_date:
            _check_due_date(change.due_date)
        return await self._write(self._update_sync, change)

    def _update_sync(self, change: TaskChange) -> Task:
        while True:
            current = self.store.get_task(change.task_id)
            if current is None:
                raise NotFound(f"task {change.task_id!r} not found")
            if change.expected_version is not None and change.expected_version != current.version:
                raise VersionConflict(
                    f"task {current.id!r} is at version {current.version}, "
                    f"not the expected {change.expected_version}"
                )
            updated = dataclasses.replace(
                current,
                title=current.title if change.title is None else change.title,
                status=current.status if change.status is None else TaskStatus(change.status),
                assignee=current.assignee if change.assignee is None else change.assignee or None,
                due_date=current.due_date if change.due_date is None else change.due_date or None,
            )
            if updated == current:
                return current  # nothing changed: no write, no event, same version
            now = now_rfc3339()
            updated = dataclasses.replace(updated, version=current.version + 1, updated_at=now)
            changed = [
                name
                for name in ("title", "status", "assignee", "due_date")
                if getattr(updated, name) != getattr(current, name)
            ]
            drafts = [_draft(EventType.UPDATED, updated, now, changed_fields=",".join(changed))]
            if updated.status != current.status:
                drafts.append(
                    _draft(
                        EventType.STATUS_CHANGED,
                        updated,
                        now,
                        previous_status=current.status.contract_name,
                    )
                )
            if updated.assignee != current.assignee:
                drafts.append(
                    _draft(
                        EventType.ASSIGNED,
                        updated,
                        now,
                        previous_assignee=current.assignee or "",
                    )
                )
            try:
                self._publish(self.store.replace_task(updated, current.version, drafts))
            except Conflict:
                # Another process changed the task between our read and write.
                if change.expected_version is not None:
                    raise VersionConflict(f"task {current.id!r} changed concurrently") from None
                continue
            return updated

    async def delete_task(self, task_id: str) -> None:
        """Archive a task and emit DELETED; archiving an archived task does nothing."""
        self._require_id(task_id, "task_id")
        await self._write(self._delete_sync, task_id)

    def _delete_sync(self, task_id: str) -> None:
        while True:
            current = self.store.get_task(task_id)
            if current is None:
                raise NotFound(f"task {task_id!r} not found")
            if current.status is TaskStatus.ARCHIVED:
                return
            now = now_rfc3339()
            archived = dataclasses.replace(
                current, status=TaskStatus.ARCHIVED, version=current.version + 1, updated_at=now
            )
            draft = _draft(
                EventType.DELETED, archived, now, previous_status=current.status.contract_name
            )
            try:
                self._publish(self.store.replace_task(archived, current.version, [draft]))
            except Conflict:
                continue
            return

    # --- PRDs ----------------------------------------------------------------

    async def parse_prd(self, requested_path: str) -> Prd:
        """Read and parse a PRD inside the project root, store it and return it."""
        self._check_field(requested_path, "prd_file_path")
        text = await self._read(
            prd_files.read_prd_file, self.project_root, requested_path, self.limits.max_prd_bytes
        )
        parsed = prd_files.parse_prd(text)
        prd = Prd(
            id=f"prd-{uuid.uuid4()}",
            path=requested_path,
            title=parsed.title,
            objectives=parsed.objectives,
            tech_stack=parsed.tech_stack,
            constraints=parsed.constraints,
            parsed_at=now_rfc3339(),
        )
        await self._write(self.store.insert_prd, prd)
        return prd

    # --- events --------------------------------------------------------------

    def open_feed(self, event_filter: EventFilter, after_sequence: int | None) -> Feed:
        """Register a subscription now; read its events from the returned Feed.

        With `after_sequence`, the feed replays every stored event after it,
        then goes live. Without, it delivers exactly the events after
        `Feed.head`, the newest event published to subscribers when the
        subscription was registered.
        """
        # Registered and head read in one step on the loop: every event after
        # the head is still to be published, so it reaches the new queue.
        subscription = self.broadcaster.subscribe(event_filter)
        return Feed(self, event_filter, subscription, self.broadcaster.head, after_sequence)

    def _replay_page(
        self, event_filter: EventFilter, cursor: int
    ) -> tuple[int, list[tuple[Event, bytes]], bool]:
        events = self.store.events_after(cursor, REPLAY_PAGE)
        encode = self.broadcaster.encode
        matched = [(e, encode(e)) for e in events if event_filter.matches(e)]
        last = events[-1].sequence if events else cursor
        return last, matched, len(events) == REPLAY_PAGE

    # --- lifecycle -----------------------------------------------------------

    async def close(self) -> None:
        """End every subscription, finish queued writes and close the store."""
        self.broadcaster.close()
        await self._loop.run_in_executor(None, self._writer.close)
        await self._loop.run_in_executor(None, self._readers.shutdown, True)
        self.store.close()


class Feed:
    """A registered subscription: replayed events first, then live ones, gapless.

    The subscription is registered before the log is read, and live events
    that replay already delivered are skipped by sequence: that order makes the
    hand-over from replay to live free of gaps and duplicates.
    """

    def __init__(
        self,
        book: TaskBook,
        event_filter: EventFilter,
        subscription: Subscription,
        head: int,
        after_sequence: int | None,
    ) -> None:
        self.head = head
        self._book = book
        self._filter = event_filter
        self._subscription = subscription
        self._after = after_sequence

    async def batches(self) -> AsyncGenerator[list[tuple[Event, bytes]], None]:
        """Yield batches of matching (event, encoded) pairs, oldest first.

        Raises events.Lagged if the subscriber falls behind its buffer while
        live, and events.Closed at shutdown.
        """
        book = self._book
        if self._after is None:
            cursor = self.head
        else:
            cursor = self._after
            while True:
                while True:
                    cursor, matched, full = await book._read(
                        book._replay_page, self._filter, cursor
                    )
                    if matched:
                        yield matched
                    if not full:
                        break
                if not self._subscription.overflowed:
                    break
                # Live events arrived faster than replay drained them. The log
                # has them all, so register afresh and keep replaying from it.
                self.close()
                self._subscription = book.broadcaster.subscribe(self._filter)
        while True:
            batch = await self._subscription.next_batch()
            batch = [pair for pair in batch if pair[0].sequence > cursor]
            if batch:
                yield batch

    def close(self) -> None:
        """Unregister the subscription. Safe to call twice."""
        self._book.broadcaster.unsubscribe(self._subscription)
