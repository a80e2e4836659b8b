"""The SQLite store: one file in WAL mode, one connection per thread."""

from __future__ import annotations

import fcntl
import json
import os
import pathlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rigger_server.domain import Event, EventDraft, EventType, Prd, Task, TaskStatus
from rigger_server.store import Conflict, TaskQuery

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
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
CREATE INDEX IF NOT EXISTS tasks_status ON tasks(status, seq);
CREATE INDEX IF NOT EXISTS tasks_assignee ON tasks(assignee, seq);
CREATE INDEX IF NOT EXISTS tasks_parent ON tasks(parent_task_id, seq);
CREATE TABLE IF NOT EXISTS events (
    sequence INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    event_type INTEGER NOT NULL,
    task_id TEXT NOT NULL,
    task TEXT NOT NULL,               -- the task as it was after the change (JSON)
    actor TEXT,
    metadata TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS prds (
    id TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    title TEXT NOT NULL,
    objectives TEXT NOT NULL,
    tech_stack TEXT NOT NULL,
    constraints TEXT NOT NULL,
    parsed_at TEXT NOT NULL
);
"""

_TASK_COLUMNS = (
    "id, title, status, assignee, due_date, source_transcript_id, source_prd_id, "
    "parent_task_id, complexity, reasoning, context_files, dependencies, created_at, "
    "updated_at, version"
)


def _task_to_json(task: Task) -> str:
    return json.dumps(
        {
            "id": task.id,
            "title": task.title,
            "status": int(task.status),
            "assignee": task.assignee,
            "due_date": task.due_date,
            "source_transcript_id": task.source_transcript_id,
            "source_prd_id": task.source_prd_id,
            "parent_task_id": task.parent_task_id,
            "subtask_ids": list(task.subtask_ids),
            "complexity": task.complexity,
            "reasoning": task.reasoning,
            "context_files": list(task.context_files),
            "dependencies": list(task.dependencies),
            "created_at": task.created_at,
            "updated_at": task.updated_at,
            "version": task.version,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def _task_from_json(text: str) -> Task:
    d = json.loads(text)
    return Task(
        id=d["id"],
        title=d["title"],
        status=TaskStatus(d["status"]),
        assignee=d["assignee"],
        due_date=d["due_date"],
        source_transcript_id=d["source_transcript_id"],
        source_prd_id=d["source_prd_id"],
        parent_task_id=d["parent_task_id"],
        subtask_ids=tuple(d["subtask_ids"]),
        complexity=d["complexity"],
        reasoning=d["reasoning"],
        context_files=tuple(d["context_files"]),
        dependencies=tuple(d["dependencies"]),
        created_at=d["created_at"],
        updated_at=d["updated_at"],
        version=d["version"],
    )


class SqliteStore:
    """A Store on one SQLite file.

    Each thread gets its own connection. WAL mode lets readers (list, replay)
    run beside the single writer without blocking it. `synchronous=FULL` makes
    every acknowledged commit survive power loss as well as a process crash.
    """

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        # Writers in other processes (the workers of `rig grpc --workers N`)
        # queue on this lock: the kernel wakes the next one the moment a
        # commit ends, where SQLite's busy handler would sleep and retry.
        self._write_lock = os.open(f"{path}-writer.lock", os.O_RDWR | os.O_CREAT, 0o644)
        conn = self._conn()
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise RuntimeError(f"{path}: SQLite refused WAL mode (got {mode!r})")
        with conn:
            conn.executescript(_SCHEMA)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

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
        # subtask_ids is derived from the children's parent_task_id, so adding
        # a subtask never rewrites (or re-versions) its parent.
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
        subtasks = self._subtasks(conn, [r[0] for r in rows])
        return [
            Task(
                id=r[0],
                title=r[1],
                status=TaskStatus(r[2]),
                assignee=r[3],
                due_date=r[4],
                source_transcript_id=r[5],
                source_prd_id=r[6],
                parent_task_id=r[7],
                complexity=r[8],
                reasoning=r[9],
                context_files=tuple(json.loads(r[10])),
                dependencies=tuple(json.loads(r[11])),
                created_at=r[12],
                updated_at=r[13],
                version=r[14],
                subtask_ids=tuple(subtasks.get(r[0], ())),
            )
            for r in rows
        ]

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
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                self._task_values(task),
            )
            return self._append(conn, events)

    def replace_task(
        self, task: Task, expected_version: int, events: Sequence[EventDraft]
    ) -> list[Event]:
        """Replace a task only if its stored version is `expected_version`, else raise Conflict."""
        with self.atomic() as conn:
            values = self._task_values(task)
            cursor = conn.execute(
                "UPDATE tasks SET title=?, status=?, assignee=?, due_date=?, "
                "source_transcript_id=?, source_prd_id=?, parent_task_id=?, complexity=?, "
                "reasoning=?, context_files=?, dependencies=?, created_at=?, updated_at=?, "
                "version=? WHERE id=? AND version=?",
                (*values[1:], task.id, expected_version),
            )
            if cursor.rowcount != 1:
                raise Conflict(task.id)
            return self._append(conn, events)

    @staticmethod
    def _task_values(task: Task) -> tuple[object, ...]:
        return (
            task.id,
            task.title,
            int(task.status),
            task.assignee,
            task.due_date,
            task.source_transcript_id,
            task.source_prd_id,
            task.parent_task_id,
            task.complexity,
            task.reasoning,
            json.dumps(list(task.context_files), ensure_ascii=False),
            json.dumps(list(task.dependencies), ensure_ascii=False),
            task.created_at,
            task.updated_at,
            task.version,
        )

    # --- events --------------------------------------------------------------

    def _append(self, conn: sqlite3.Connection, drafts: Sequence[EventDraft]) -> list[Event]:
        # Inside the write transaction we hold SQLite's only write lock, so
        # MAX+1 is gapless and never handed out twice.
        last = conn.execute("SELECT COALESCE(MAX(sequence), 0) FROM events").fetchone()[0]
        events = [Event.from_draft(d, last + i) for i, d in enumerate(drafts, start=1)]
        conn.executemany(
            "INSERT INTO events (sequence, event_id, timestamp, event_type, task_id, task, "
            "actor, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    e.sequence,
                    e.event_id,
                    e.timestamp,
                    int(e.event_type),
                    e.task.id,
                    _task_to_json(e.task),
                    e.actor,
                    json.dumps(e.metadata, ensure_ascii=False, sort_keys=True),
                )
                for e in events
            ],
        )
        return events

    def events_after(self, sequence: int, limit: int) -> list[Event]:
        """Return up to `limit` committed events with a greater sequence, in order."""
        rows = self._conn().execute(
            "SELECT sequence, event_id, timestamp, event_type, task, actor, metadata "
            "FROM events WHERE sequence > ? ORDER BY sequence LIMIT ?",
            (sequence, limit),
        )
        return [
            Event(
                sequence=r[0],
                event_id=r[1],
                timestamp=r[2],
                event_type=EventType(r[3]),
                task=_task_from_json(r[4]),
                actor=r[5],
                metadata=json.loads(r[6]),
            )
            for r in rows
        ]

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
