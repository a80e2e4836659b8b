"""The SQLite store: one file in WAL mode, one connection per thread."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import pathlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rigger_server.domain import (
    Event,
    EventDraft,
    EventEncoder,
    EventType,
    Prd,
    Task,
    TaskStatus,
    commit_event,
)
from rigger_server.errors import VersionConflict
from rigger_server.store import TaskQuery

SCHEMA_VERSION = 2

# Each schema version's DDL, kept as it was: a database at version N is
# brought up to date by running the steps after N in order, in one transaction.
_CREATE_V1 = """
CREATE TABLE tasks (
    seq INTEGER PRIMARY KEY,          -- insertion order, for "newest first"
    id TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    status INTEGER NOT NULL,
    assignee TEXT,
    due_date TEXT,
    source_transcript_id TEXT,
    source_prd_id TEXT,
    parent_task_id TEXT REFERENCES tasks(id),
    complexity INTEGER,
    reasoning TEXT,
    context_files TEXT NOT NULL DEFAULT '[]',
    dependencies TEXT NOT NULL DEFAULT '[]',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version INTEGER NOT NULL
);
CREATE INDEX tasks_status ON tasks(status, seq);
CREATE INDEX tasks_assignee ON tasks(assignee, seq);
CREATE INDEX tasks_parent ON tasks(parent_task_id, seq);
CREATE TABLE events (
    sequence INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    event_type INTEGER NOT NULL,
    task_id TEXT NOT NULL,
    task TEXT NOT NULL,
    actor TEXT,
    metadata TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE prds (
    id TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    title TEXT NOT NULL,
    objectives TEXT NOT NULL,
    tech_stack TEXT NOT NULL,
    constraints TEXT NOT NULL,
    parsed_at TEXT NOT NULL
);
"""

# Version 2: the log keeps each event's encoded bytes (what every publisher and
# replay sends) and just what a subscription filter needs, instead of a JSON
# copy of the task that had to be decoded and re-encoded on every read.
_EVENTS_V2 = """
CREATE TABLE events_v2 (
    sequence INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    event_type INTEGER NOT NULL,
    task_id TEXT NOT NULL,
    assignee TEXT,
    payload BLOB NOT NULL
)
"""

# Task fields stored as columns of the same name. subtask_ids is derived from
# the children's parent_task_id when read, so adding a subtask never rewrites
# (or re-versions) its parent; tuple fields are stored as JSON lists.
_STORED_FIELDS = tuple(f.name for f in dataclasses.fields(Task) if f.name != "subtask_ids")
_LIST_FIELDS = frozenset(f.name for f in dataclasses.fields(Task) if f.default == ())
_TASK_COLUMNS = ", ".join(_STORED_FIELDS)
_EVENT_COLUMNS = "sequence, event_type, task_id, assignee, payload"


def _task_row(task: Task) -> tuple[object, ...]:
    return tuple(
        json.dumps(list(getattr(task, name)), ensure_ascii=False)
        if name in _LIST_FIELDS
        else getattr(task, name)
        for name in _STORED_FIELDS
    )


def _task_from_values(values: dict[str, Any]) -> Task:
    for name in _LIST_FIELDS:
        values[name] = tuple(values[name])
    values["status"] = TaskStatus(values["status"])
    return Task(**values)


class SqliteStore:
    """A Store on one SQLite file.

    Each thread gets its own connection. WAL mode lets readers (list, replay)
    run beside the single writer without blocking it. `synchronous=FULL` makes
    every acknowledged commit survive power loss as well as a process crash.
    """

    def __init__(self, path: pathlib.Path, encode: EventEncoder) -> None:
        self.path = path
        self._encode = encode
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        # Writers in other processes (workers, or other servers on this file)
        # queue on this lock: the kernel wakes the next one the moment a
        # commit ends, where SQLite's busy handler would sleep and retry.
        self._write_lock = os.open(f"{path}-writer.lock", os.O_RDWR | os.O_CREAT, 0o644)
        conn = self._conn()
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise RuntimeError(f"{path}: SQLite refused WAL mode (got {mode!r})")
        self._migrate(conn)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        if conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return  # nothing to write: a server can start on a full disk
        with self.atomic():
            # Read again under the write lock: another process may have
            # migrated meanwhile.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path}: database schema version {version} is newer than this "
                    f"Rigger's ({SCHEMA_VERSION}); upgrade Rigger"
                )
            if version < 1:
                for statement in _CREATE_V1.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            if version < 2:
                self._events_to_v2(conn)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _events_to_v2(self, conn: sqlite3.Connection) -> None:
        conn.execute(_EVENTS_V2)
        rows = conn.execute(
            "SELECT sequence, event_id, timestamp, event_type, task, actor, metadata "
            "FROM events ORDER BY sequence"
        )
        for sequence, event_id, timestamp, event_type, task, actor, metadata in rows:
            draft = EventDraft(
                event_id=event_id,
                timestamp=timestamp,
                event_type=EventType(event_type),
                task=_task_from_values(json.loads(task)),
                actor=actor,
                metadata=json.loads(metadata),
            )
            event = commit_event(draft, sequence, self._encode)
            conn.execute(
                "INSERT INTO events_v2 (sequence, event_id, timestamp, event_type, task_id, "
                "assignee, payload) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    sequence,
                    event_id,
                    timestamp,
                    event_type,
                    event.task_id,
                    event.assignee,
                    event.payload,
                ),
            )
        conn.execute("DROP TABLE events")
        conn.execute("ALTER TABLE events_v2 RENAME TO events")

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise RuntimeError("store is closed")
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a
            # write transaction takes the write lock before it reads.
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=5000")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def atomic(self) -> Iterator[sqlite3.Connection]:
        """Writes inside commit together or not at all; nested, a savepoint."""
        conn = self._conn()
        if not conn.in_transaction:
            fcntl.flock(self._write_lock, fcntl.LOCK_EX)
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            finally:
                fcntl.flock(self._write_lock, fcntl.LOCK_UN)
            return
        depth = getattr(self._local, "depth", 0) + 1
        self._local.depth = depth
        name = f"nested_{depth}"
        conn.execute(f"SAVEPOINT {name}")
        try:
            yield conn
        except BaseException:
            conn.execute(f"ROLLBACK TO {name}")
            conn.execute(f"RELEASE {name}")
            raise
        finally:
            self._local.depth = depth - 1
        conn.execute(f"RELEASE {name}")

    # --- tasks ---------------------------------------------------------------

    def _subtasks(self, conn: sqlite3.Connection, task_ids: Sequence[str]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for start in range(0, len(task_ids), 500):
            chunk = task_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(
                f"SELECT parent_task_id, id FROM tasks WHERE parent_task_id IN ({marks}) "
                "ORDER BY seq",
                chunk,
            )
            for parent, child in rows:
                found.setdefault(parent, []).append(child)
        return found

    def _rows_to_tasks(self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> list[Task]:
        # Rows hold _STORED_FIELDS in order; id comes first.
        subtasks = self._subtasks(conn, [r[0] for r in rows])
        tasks = []
        for row in rows:
            values = dict(zip(_STORED_FIELDS, row, strict=True))
            for name in _LIST_FIELDS - {"subtask_ids"}:
                values[name] = json.loads(values[name])
            values["subtask_ids"] = subtasks.get(row[0], ())
            tasks.append(_task_from_values(values))
        return tasks

    def get_task(self, task_id: str) -> Task | None:
        """Return the task, or None if there is no such id."""
        conn = self._conn()
        rows = conn.execute(
            f"SELECT {_TASK_COLUMNS} FROM tasks WHERE id = ?", (task_id,)
        ).fetchall()
        tasks = self._rows_to_tasks(conn, rows)
        return tasks[0] if tasks else None

    def list_tasks(self, query: TaskQuery) -> tuple[list[Task], int]:
        """Return one page of matching tasks, newest first, and the total match count."""
        where: list[str] = []
        args: list[object] = []
        if query.status is None:
            where.append("status != ?")
            args.append(int(TaskStatus.ARCHIVED))
        else:
            where.append("status = ?")
            args.append(int(query.status))
        if query.assignee is not None:
            where.append("assignee = ?")
            args.append(query.assignee)
        clause = " AND ".join(where)
        conn = self._conn()
        conn.execute("BEGIN")  # one snapshot for the page and its count
        try:
            total = conn.execute(f"SELECT COUNT(*) FROM tasks WHERE {clause}", args).fetchone()[0]
            rows = conn.execute(
                f"SELECT {_TASK_COLUMNS} FROM tasks WHERE {clause} ORDER BY seq DESC "
                "LIMIT ? OFFSET ?",
                [*args, -1 if query.limit is None else query.limit, query.offset],
            ).fetchall()
            tasks = self._rows_to_tasks(conn, rows)
        finally:
            conn.execute("COMMIT")
        return tasks, total

    def insert_task(self, task: Task, events: Sequence[EventDraft]) -> list[Event]:
        """Insert a new task and append its events, atomically."""
        with self.atomic() as conn:
            conn.execute(
                f"INSERT INTO tasks ({_TASK_COLUMNS}) VALUES "
                f"({', '.join('?' * len(_STORED_FIELDS))})",
                _task_row(task),
            )
            return self._append(conn, events)

    def replace_task(
        self, task: Task, expected_version: int, events: Sequence[EventDraft]
    ) -> list[Event]:
        """Replace a task only if its stored version is `expected_version`."""
        with self.atomic() as conn:
            cursor = conn.execute(
                f"UPDATE tasks SET {', '.join(f'{name}=?' for name in _STORED_FIELDS[1:])} "
                "WHERE id=? AND version=?",
                (*_task_row(task)[1:], task.id, expected_version),
            )
            if cursor.rowcount != 1:
                raise VersionConflict(
                    f"task {task.id!r} is no longer at version {expected_version}"
                )
            return self._append(conn, events)

    # --- events --------------------------------------------------------------

    def _append(self, conn: sqlite3.Connection, drafts: Sequence[EventDraft]) -> list[Event]:
        # Inside the write transaction we hold SQLite's only write lock, so
        # MAX+1 is gapless and never handed out twice.
        last = conn.execute("SELECT COALESCE(MAX(sequence), 0) FROM events").fetchone()[0]
        events = [commit_event(d, last + i, self._encode) for i, d in enumerate(drafts, start=1)]
        conn.executemany(
            "INSERT INTO events (sequence, event_id, timestamp, event_type, task_id, assignee, "
            "payload) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    e.sequence,
                    d.event_id,
                    d.timestamp,
                    int(e.event_type),
                    e.task_id,
                    e.assignee,
                    e.payload,
                )
                for d, e in zip(drafts, events, strict=True)
            ],
        )
        return events

    def events_after(self, sequence: int, limit: int) -> list[Event]:
        """Return up to `limit` committed events with a greater sequence, in order, with bytes."""
        rows = self._conn().execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE sequence > ? ORDER BY sequence LIMIT ?",
            (sequence, limit),
        )
        return [Event(r[0], EventType(r[1]), r[2], r[3], r[4]) for r in rows]

    def last_sequence(self) -> int:
        """Return the sequence of the newest committed event, 0 when the log is empty."""
        row = self._conn().execute("SELECT COALESCE(MAX(sequence), 0) FROM events").fetchone()
        return int(row[0])

    # --- PRDs ----------------------------------------------------------------

    def insert_prd(self, prd: Prd) -> None:
        """Store a parsed PRD."""
        with self.atomic() as conn:
            conn.execute(
                "INSERT INTO prds (id, path, title, objectives, tech_stack, constraints, "
                "parsed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    prd.id,
                    prd.path,
                    prd.title,
                    json.dumps(list(prd.objectives), ensure_ascii=False),
                    json.dumps(list(prd.tech_stack), ensure_ascii=False),
                    json.dumps(list(prd.constraints), ensure_ascii=False),
                    prd.parsed_at,
                ),
            )

    def close(self) -> None:
        """Checkpoint the WAL into the main file and close every connection."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            connections, self._connections = self._connections, []
        for i, conn in enumerate(connections):
            if i == 0:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.close()
        os.close(self._write_lock)
