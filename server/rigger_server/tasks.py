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
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from rigger_server import prd as prd_files
from rigger_server.confined import ConfinedFile, read_confined
from rigger_server.domain import Event, EventDraft, EventType, Prd, Task, TaskStatus, now_rfc3339
from rigger_server.errors import (
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    VersionConflict,
    quoted,
)
from rigger_server.events import Broadcaster, EventFilter, Turns
from rigger_server.feed import Feed
from rigger_server.guard import UNGUARDED, WriteGuard
from rigger_server.limits import Limits
from rigger_server.store import Store, TaskQuery
from rigger_server.writer import CommitObserver, GroupWriter, Publish, Written

T = TypeVar("T")
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


def _check_due_date(value: str) -> str:
    try:
        if not _DATE.fullmatch(value):
            raise ValueError(value)
        dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidArgument(
            "due_date", f"{quoted(value)} is not a date of the form YYYY-MM-DD"
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
        publish: Publish | None = None,
        reach: Callable[[int], Awaitable[None]] | None = None,
        observe_commit: CommitObserver | None = None,
    ) -> None:
        self.store = store
        self.broadcaster = broadcaster
        self.project_root = project_root
        self.limits = limits or Limits()
        self._loop = asyncio.get_running_loop()
        # One writer thread: SQLite has one write lock anyway, and a single
        # thread publishes commits in exactly the order they happened.
        # `publish` receives each group's events on the loop, in commit order;
        # in a server it is the log tail, which orders them among the events
        # other processes commit to the same log.
        # `observe_commit` hears how long each commit took (the server's metrics).
        self._writer = GroupWriter(
            store, self._loop, publish or _publish_directly(broadcaster), observe_commit
        )
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="rigger-reader")
        # Waits until this server has published the log up to a sequence; in
        # a server, the log tail's. Alone with its store, a book's broadcaster
        # has published all there is.
        self._reach = reach
        # PRDs are read and parsed on a thread of their own: a large one takes
        # seconds of CPU, which on the loop would freeze every call and stream,
        # and on the reader pool would hold back replays and reads.
        self._prd_worker = ThreadPoolExecutor(1, thread_name_prefix="rigger-prd")

    async def _write(
        self, fn: Callable[..., Written[T]], *args: object, guard: WriteGuard = UNGUARDED
    ) -> T:
        return await self._writer.submit(fn, *args, check=guard.check)

    async def _read(self, fn: Callable[..., T], *args: object) -> T:
        return await self._loop.run_in_executor(self._readers, fn, *args)

    async def write(
        self, fn: Callable[..., Written[T]], *args: object, guard: WriteGuard = UNGUARDED
    ) -> T:
        """Run `fn(*args)` on the writer thread, inside a transaction; see GroupWriter.submit.

        For domain operations beside this one (planning.py) that commit
        through the same writer, so every commit is published in order. The
        write commits only if `guard` still holds right before the commit.
        """
        return await self._write(fn, *args, guard=guard)

    async def read(self, fn: Callable[..., T], *args: object) -> T:
        """Run a store read on the reader pool, off the event loop."""
        return await self._read(fn, *args)

    # --- validation ----------------------------------------------------------
    # What a value means. How long it may be is checked once, before a
    # request reaches the domain: service.py holds every request to
    # request_limits.FIELD_LIMITS.

    @staticmethod
    def _require_id(value: str, field: str) -> str:
        if not value.strip():
            raise InvalidArgument(field, "is required")
        return value

    @staticmethod
    def _check_title(value: str) -> str:
        if not value.strip():
            raise InvalidArgument("title", "must not be empty or whitespace")
        return value

    # --- reads ---------------------------------------------------------------

    async def get_task(self, task_id: str) -> Task:
        """Return a task by id."""
        self._require_id(task_id, "task_id")
        task = await self._read(self.store.get_task, task_id)
        if task is None:
            raise NotFound(f"task {quoted(task_id)} not found")
        return task

    async def list_tasks(self, query: TaskQuery) -> tuple[list[Task], int]:
        """Return one page of matching tasks, newest first, and how many match in all."""
        return await self._read(self.store.list_tasks, query)

    async def last_sequence(self) -> int:
        """The sequence of the newest committed event, 0 when there is none."""
        return await self._read(self.store.last_sequence)

    async def catch_up(self) -> int:
        """Publish every event committed so far, by any server; return the log's head.

        Another server (or replica) may have answered a write this one has not
        published yet: waiting here before a subscription registers means a
        client that heard "done" from any server finds its write at or before
        the subscription's head, whichever server it subscribes to.
        """
        head = await self.last_sequence()
        if self._reach is not None and head > self.broadcaster.head:
            await self._reach(head)
        return head

    async def read_log(self, after: int, limit: int, max_bytes: int | None = None) -> list[Event]:
        """Up to `limit` committed events after sequence `after`, oldest first.

        With `max_bytes`, no event follows once their payloads reach it.
        """
        return await self._read(self.store.events_after, after, limit, max_bytes)

    # --- writes --------------------------------------------------------------

    async def add_task(self, new: NewTask, guard: WriteGuard = UNGUARDED) -> Task:
        """Create a task in TODO and emit CREATED, if `guard` holds when it commits."""
        self._check_title(new.title)
        if new.due_date is not None:
            _check_due_date(new.due_date)
        if new.parent_task_id is not None:
            self._require_id(new.parent_task_id, "parent_task_id")
        return await self._write(self._add_sync, new, guard=guard)

    def _add_sync(self, new: NewTask) -> Written[Task]:
        if new.parent_task_id is not None:
            # A count, not the siblings: the cost does not grow with them.
            siblings = self.store.subtask_count(new.parent_task_id)
            if siblings is None:
                raise NotFound(f"parent_task_id: task {quoted(new.parent_task_id)} not found")
            if siblings >= self.limits.max_subtasks:
                raise ResourceExhausted(
                    f"parent_task_id: task {quoted(new.parent_task_id)} already has {siblings} "
                    f"subtasks, the server's limit (rig grpc --max-subtasks)"
                )
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
        return task, self.store.insert_task(task, [EventDraft.new(EventType.CREATED, task, now)])

    async def update_task(self, change: TaskChange, guard: WriteGuard = UNGUARDED) -> Task:
        """Apply the fields that are set; emit UPDATED, STATUS_CHANGED and ASSIGNED as fitting.

        Only if `guard` holds when it commits.
        """
        self._require_id(change.task_id, "task_id")
        if change.status is not None and check_status(change.status) is TaskStatus.UNSPECIFIED:
            raise InvalidArgument("status", "TASK_STATUS_UNSPECIFIED is not a status to set")
        if change.title is not None:
            self._check_title(change.title)
        if change.due_date:
            _check_due_date(change.due_date)
        return await self._write(self._update_sync, change, guard=guard)

    def _update_sync(self, change: TaskChange) -> Written[Task]:
        # Runs inside the write transaction: nothing can change the task
        # between this read and the compare-and-swap below.
        current = self.store.get_task(change.task_id)
        if current is None:
            raise NotFound(f"task {quoted(change.task_id)} not found")
        if change.expected_version is not None and change.expected_version != current.version:
            raise VersionConflict(
                f"task {quoted(current.id)} is at version {current.version}, "
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
            return current, []  # nothing changed: no write, no event, same version
        now = now_rfc3339()
        updated = dataclasses.replace(updated, version=current.version + 1, updated_at=now)
        changed = [
            name
            for name in ("title", "status", "assignee", "due_date")
            if getattr(updated, name) != getattr(current, name)
        ]
        drafts = [EventDraft.new(EventType.UPDATED, updated, now, changed_fields=",".join(changed))]
        if updated.status != current.status:
            drafts.append(
                EventDraft.new(
                    EventType.STATUS_CHANGED,
                    updated,
                    now,
                    previous_status=current.status.contract_name,
                )
            )
        if updated.assignee != current.assignee:
            drafts.append(
                EventDraft.new(
                    EventType.ASSIGNED,
                    updated,
                    now,
                    previous_assignee=current.assignee or "",
                )
            )
        return updated, self.store.replace_task(updated, current.version, drafts)

    async def delete_task(self, task_id: str, guard: WriteGuard = UNGUARDED) -> None:
        """Archive a task and emit DELETED; archiving an archived task does nothing.

        Only if `guard` holds when it commits.
        """
        self._require_id(task_id, "task_id")
        await self._write(self._delete_sync, task_id, guard=guard)

    def _delete_sync(self, task_id: str) -> Written[None]:
        current = self.store.get_task(task_id)
        if current is None:
            raise NotFound(f"task {quoted(task_id)} not found")
        if current.status is TaskStatus.ARCHIVED:
            return None, []
        now = now_rfc3339()
        archived = dataclasses.replace(
            current, status=TaskStatus.ARCHIVED, version=current.version + 1, updated_at=now
        )
        draft = EventDraft.new(
            EventType.DELETED, archived, now, previous_status=current.status.contract_name
        )
        return None, self.store.replace_task(archived, current.version, [draft])

    # --- PRDs ----------------------------------------------------------------

    async def parse_prd(
        self, requested_path: str, guard: WriteGuard = UNGUARDED
    ) -> tuple[Prd, prd_files.ParsedPrd]:
        """Read and parse a PRD inside the project root, store it; it and its parse.

        Stored only if `guard` holds when it commits.
        """
        prd, parsed = await self.read_prd(requested_path)
        await self._write(self._insert_prd_sync, prd, guard=guard)
        return prd, parsed

    async def read_prd(self, requested_path: str) -> tuple[Prd, prd_files.ParsedPrd]:
        """Read and parse a PRD inside the project root, without storing it.

        The Prd keeps the markdown and the file's path resolved against the
        root; parsing runs off the event loop (a 1 MiB PRD takes a while).
        """
        read, parsed = await self._loop.run_in_executor(
            self._prd_worker, self._read_and_parse_prd, requested_path
        )
        prd = Prd(
            id=f"prd-{uuid.uuid4()}",
            path=requested_path,
            title=parsed.title,
            objectives=parsed.objectives,
            tech_stack=parsed.tech_stack,
            constraints=parsed.constraints,
            parsed_at=now_rfc3339(),
            markdown=read.text,
            resolved_path=read.path,
        )
        return prd, parsed

    def _read_and_parse_prd(self, requested_path: str) -> tuple[ConfinedFile, prd_files.ParsedPrd]:
        read = read_confined(
            self.project_root,
            requested_path,
            field="prd_file_path",
            max_bytes=self.limits.max_prd_bytes,
        )
        return read, prd_files.parse_prd(read.text)

    def _insert_prd_sync(self, prd: Prd) -> Written[None]:
        self.store.insert_prd(prd)
        return None, []

    # --- events --------------------------------------------------------------

    def open_feed(
        self,
        event_filter: EventFilter,
        after_sequence: int | None,
        turns: Turns | None = None,
    ) -> Feed:
        """Register a subscription now; read its events from the returned Feed.

        With `after_sequence`, the feed replays every stored event after it,
        then goes live. Without, it delivers exactly the events after
        `Feed.head`, the newest event published to subscribers when the
        subscription was registered. With `turns`, its live batches are taken
        in turns with the other feeds sharing them (see feed.py).
        """
        return Feed(self.broadcaster, self.read_log, event_filter, after_sequence, turns)

    # --- lifecycle -----------------------------------------------------------

    async def close(self) -> None:
        """Finish queued writes and close the store.

        Subscriptions are the server's to end (it closes the broadcaster
        first, so subscribers hear why at once).
        """
        await self._loop.run_in_executor(None, self._writer.close)
        await self._loop.run_in_executor(None, self._readers.shutdown, True)
        await self._loop.run_in_executor(None, self._prd_worker.shutdown, True)
        self.store.close()


def _publish_directly(broadcaster: Broadcaster) -> Publish:
    # Without a log tail (a TaskBook alone with its store, as in unit tests),
    # this process's commits are the whole log.
    def publish(events: list[Event], then: Callable[[], None]) -> None:
        broadcaster.publish(events)
        then()

    return publish
