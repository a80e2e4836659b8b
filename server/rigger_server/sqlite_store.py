"""The SQLite store: one file in WAL mode, one connection per thread."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import json
import logging
import os
import pathlib
import sqlite3
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from rigger_server.domain import (
    ComprehensionTestRecord,
    EnhancementRecord,
    Event,
    EventDraft,
    EventEncoder,
    EventType,
    Prd,
    Task,
    commit_event,
)
from rigger_server.errors import (
    DiskFull,
    StoreFault,
    StoreGone,
    StoreUnavailable,
    VersionConflict,
)
from rigger_server.schema import (
    COMPREHENSION_TESTS,
    ENHANCEMENTS,
    EVENT_COLUMNS,
    EVENT_INSERT_COLUMNS,
    EVENT_PAYLOADS,
    FIRST_SCHEMA,
    PLANNING,
    PRD_ITEM,
    PRDS,
    SUBTASK_COUNT,
    TASKS,
    Migration,
    Table,
    event_from_row,
    event_row,
    migrations,
)
from rigger_server.store import TaskQuery

log = logging.getLogger(__name__)

# Each schema step's DDL, kept as it was (schema.LEDGER numbers them): a
# database at version N is brought up to date by running the steps after N in
# order, in one transaction.
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

# schema.EVENT_PAYLOADS: the events table anew; _events_to_v2 (below)
# re-encodes the old one's events into it.
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

# schema.PLANNING. A PRD keeps its markdown (planning re-parses exactly
# what was parsed) and the file it came from, resolved, so that PRDs parsed
# from one file are known as one; tasks are found by their PRD; an
# orchestration's enhancements and comprehension tests are kept with the task.
_PLANNING_V4 = """
ALTER TABLE prds ADD COLUMN markdown TEXT;
ALTER TABLE prds ADD COLUMN resolved_path TEXT;
CREATE INDEX prds_resolved_path ON prds(resolved_path);
CREATE INDEX tasks_source_prd ON tasks(source_prd_id, seq);
CREATE TABLE enhancements (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    task_id TEXT NOT NULL REFERENCES tasks(id),
    timestamp TEXT NOT NULL,
    enhancement_type TEXT NOT NULL,
    content TEXT NOT NULL,
    planner TEXT NOT NULL,
    model TEXT NOT NULL
);
CREATE INDEX enhancements_task ON enhancements(task_id, seq);
CREATE TABLE comprehension_tests (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    task_id TEXT NOT NULL REFERENCES tasks(id),
    timestamp TEXT NOT NULL,
    test_type TEXT NOT NULL,
    question TEXT NOT NULL,
    options TEXT NOT NULL DEFAULT '[]',
    correct_answer TEXT NOT NULL,
    planner TEXT NOT NULL,
    model TEXT NOT NULL
);
CREATE INDEX comprehension_tests_task ON comprehension_tests(task_id, seq)
"""

# schema.PRD_ITEM: a generated task keeps the PRD item it was made for
# (Task.prd_item), so that generating the PRD again matches items to their
# tasks, renamed or not.
_PRD_ITEM_V5 = "ALTER TABLE tasks ADD COLUMN prd_item TEXT"

# schema.SUBTASK_COUNT: adding a subtask (and checking the limit on them)
# costs the same however many its parent already has.
_SUBTASK_COUNT_V3 = (
    "ALTER TABLE tasks ADD COLUMN subtask_count INTEGER NOT NULL DEFAULT 0",
    "UPDATE tasks SET subtask_count = "
    "(SELECT COUNT(*) FROM tasks AS child WHERE child.parent_task_id = tasks.id)",
)


def _script(statements: str | Sequence[str]) -> Callable[[SqliteStore, sqlite3.Connection], None]:
    """A migration running DDL statements (a string of them separated by ";") in order."""
    if isinstance(statements, str):
        statements = [s for s in statements.split(";") if s.strip()]

    def run(_: SqliteStore, conn: sqlite3.Connection) -> None:
        for statement in statements:
            conn.execute(statement)

    return run


def _events_to_v2(store: SqliteStore, conn: sqlite3.Connection) -> None:
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
            task=TASKS.record_from_values(json.loads(task)),
            actor=actor,
            metadata=json.loads(metadata),
        )
        event = commit_event(draft, sequence, store._encode, bounded=False)
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


# Each step of schema.LEDGER that SQLite records in PRAGMA user_version.
MIGRATIONS: tuple[Migration[Callable[[SqliteStore, sqlite3.Connection], None]], ...] = migrations(
    "sqlite",
    {
        FIRST_SCHEMA: _script(_CREATE_V1),
        EVENT_PAYLOADS: _events_to_v2,
        SUBTASK_COUNT: _script(_SUBTASK_COUNT_V3),
        PLANNING: _script(_PLANNING_V4),
        PRD_ITEM: _script(_PRD_ITEM_V5),
    },
)
SCHEMA_VERSION = MIGRATIONS[-1].version


def _columns(table: Table[Any]) -> str:
    return ", ".join(table.columns)


def _marks(table: Table[Any]) -> str:
    return ", ".join("?" * len(table.columns))


_TASK_COLUMNS = _columns(TASKS)
_EVENT_COLUMNS = ", ".join(EVENT_COLUMNS)
_INSERT_EVENTS = (
    f"INSERT INTO events ({', '.join(EVENT_INSERT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(EVENT_INSERT_COLUMNS))})"
)


def _disk_full(path: pathlib.Path) -> bool:
    try:
        return os.statvfs(path.parent).f_bavail == 0
    except OSError:
        return False


def _fault(exc: sqlite3.Error, path: pathlib.Path) -> StoreFault | None:
    """What an SQLite error means to a caller, or None for a bug (a constraint, bad SQL)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    # SQLite reports some writes that found no space as I/O errors (growing
    # the -shm file, for one); a full file system tells them apart.
    if name == "SQLITE_FULL" or (name.startswith("SQLITE_IOERR") and _disk_full(path)):
        return DiskFull("disk full: the server cannot write to its database")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return StoreUnavailable("another process holds the database's write lock; try again")
    if name.startswith("SQLITE_READONLY"):
        return StoreUnavailable("the database is read-only")
    if name.startswith(("SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return StoreUnavailable("the database cannot be opened or read; see the server log")
    return None


P = ParamSpec("P")
R = TypeVar("R")


def _translated(
    method: Callable[Concatenate[SqliteStore, P], R],
) -> Callable[Concatenate[SqliteStore, P], R]:
    """Raise SQLite's errors as the domain's StoreFaults (the original as their cause)."""

    @functools.wraps(method)
    def wrapper(self: SqliteStore, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            fault = _fault(exc, self.path)
            if fault is None:
                raise
            raise fault from exc

    return cast("Callable[Concatenate[SqliteStore, P], R]", wrapper)


def _json_list(values: tuple[str, ...]) -> str:
    # Lists are JSON text. Most are empty, and json.dumps costs microseconds
    # even then: a generation writes thousands of rows in one transaction.
    return json.dumps(list(values), ensure_ascii=False) if values else "[]"


def _task_row(task: Task) -> tuple[object, ...]:
    return TASKS.row(task, _json_list)


class SqliteStore:
    """A Store on one SQLite file.

    Each thread gets its own connection. WAL mode lets readers (list, replay)
    run beside the single writer without blocking it. `synchronous=FULL` makes
    every acknowledged commit survive power loss as well as a process crash.
    """

    def __init__(self, path: pathlib.Path, encode: EventEncoder) -> None:
        """Open (or create) the database; a StoreFault says clearly why it cannot be."""
        self.path = path
        self._encode = encode
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._write_lock = -1
        # The file this store opened; a commit checks the path still names it.
        self._identity: tuple[int, int] | None = None
        try:
            self._open()
        except BaseException as exc:
            self.close()
            fault: StoreFault | None = None
            if isinstance(exc, StoreFault):
                fault = exc
            elif isinstance(exc, sqlite3.Error):
                fault = _fault(exc, path)
            elif isinstance(exc, OSError):
                fault = (
                    DiskFull("disk full")
                    if exc.errno == errno.ENOSPC
                    else StoreUnavailable(exc.strerror or str(exc))
                )
            if fault is None:
                raise
            raise type(fault)(f"cannot open the database {path}: {fault}") from exc

    def _open(self) -> None:
        path = self.path
        for needed in (path, path.parent):
            # Refuse here, clearly, what SQLite would open read-only in silence.
            if needed.exists() and not os.access(needed, os.W_OK):
                kind = "database" if needed == path else "database's directory"
                raise StoreUnavailable(
                    f"the {kind} is read-only (Rigger writes the database, and its "
                    "-wal, -shm and lock files beside it)"
                )
        # Writers in other processes (workers, or other servers on this file)
        # queue on this lock: the kernel wakes the next one the moment a
        # commit ends, where SQLite's busy handler would sleep and retry.
        self._write_lock = os.open(f"{path}-writer.lock", os.O_RDWR | os.O_CREAT, 0o644)
        conn = self._conn(create=True)
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise RuntimeError(f"{path}: SQLite refused WAL mode (got {mode!r})")
        opened = path.stat()
        self._identity = (opened.st_dev, opened.st_ino)
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
            for step in MIGRATIONS:
                if step.version > version:
                    step.change(self, conn)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _conn(self, *, create: bool = False) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise RuntimeError("store is closed")
            # Only the first connection may create the file: a later one
            # finding it gone must fail, not start an empty database there.
            uri = f"file:{urllib.parse.quote(str(self.path))}?mode={'rwc' if create else 'rw'}"
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a
            # write transaction takes the write lock before it reads.
            try:
                conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA foreign_keys=ON")
                conn.execute("PRAGMA busy_timeout=5000")
            except sqlite3.Error:
                if not create:
                    self._check_same_file()  # gone: say so, rather than "cannot open"
                raise
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _execute(self, conn: sqlite3.Connection, statement: str) -> None:
        try:
            conn.execute(statement)
        except sqlite3.Error as exc:
            fault = _fault(exc, self.path)
            if fault is None:
                raise
            raise fault from exc

    def _check_same_file(self) -> None:
        # A database deleted or replaced under a running server still takes
        # commits (the open descriptors point at the old file), and they would
        # be lost at the next start: refuse them instead.
        try:
            now = self.path.stat()
            identity: tuple[int, int] | None = (now.st_dev, now.st_ino)
        except FileNotFoundError:
            identity = None
        if identity != self._identity:
            raise StoreGone(
                "the database file was deleted or replaced while the server was running; "
                "nothing was written. Restart the server"
            )

    @contextmanager
    def atomic(
        self, before_commit: Callable[[], None] | None = None
    ) -> Iterator[sqlite3.Connection]:
        """Writes inside commit together or not at all; nested, a savepoint.

        The outermost calls `before_commit` right before COMMIT.
        """
        try:
            conn = self._conn()
        except sqlite3.Error as exc:
            fault = _fault(exc, self.path)
            if fault is None:
                raise
            raise fault from exc
        depth: int = getattr(self._local, "depth", 0)
        if depth == 0:
            fcntl.flock(self._write_lock, fcntl.LOCK_EX)
            self._local.depth = 1
            self._local.aborted = None
            try:
                self._execute(conn, "BEGIN IMMEDIATE")
                try:
                    yield conn
                    if self._local.aborted is not None:
                        raise self._local.aborted()
                    self._check_same_file()
                    if before_commit is not None:
                        before_commit()
                    self._execute(conn, "COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        # A failing rollback must not hide why we roll back.
                        with contextlib.suppress(sqlite3.Error):
                            conn.execute("ROLLBACK")
                    raise
            finally:
                self._local.depth = 0
                fcntl.flock(self._write_lock, fcntl.LOCK_UN)
            return
        if self._local.aborted is not None:
            raise self._local.aborted()
        name = f"nested_{depth}"
        self._local.depth = depth + 1
        try:
            self._execute(conn, f"SAVEPOINT {name}")
            try:
                yield conn
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute(f"ROLLBACK TO {name}")
                    conn.execute(f"RELEASE {name}")
                else:
                    # SQLite rolled the whole transaction back (a full disk, an
                    # I/O error): the other writes of the group are gone too,
                    # and nothing may run outside the transaction now.
                    self._local.aborted = _aborted(exc)
                raise
            self._execute(conn, f"RELEASE {name}")
        finally:
            self._local.depth = depth

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
        # Rows hold TASKS.columns in order; id comes first.
        subtasks = self._subtasks(conn, [r[0] for r in rows])
        return [
            TASKS.record_from(row, json.loads, subtask_ids=tuple(subtasks.get(row[0], ())))
            for row in rows
        ]

    @_translated
    def get_task(self, task_id: str) -> Task | None:
        """Return the task, or None if there is no such id."""
        conn = self._conn()
        rows = conn.execute(
            f"SELECT {_TASK_COLUMNS} FROM tasks WHERE id = ?", (task_id,)
        ).fetchall()
        tasks = self._rows_to_tasks(conn, rows)
        return tasks[0] if tasks else None

    @_translated
    def list_tasks(self, query: TaskQuery) -> tuple[list[Task], int]:
        """Return one page of matching tasks, newest first, and the total match count."""
        clause, args = query.sql_condition("?", "")
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

    @_translated
    def insert_task(self, task: Task, events: Sequence[EventDraft]) -> list[Event]:
        """Insert a new task and append its events, atomically."""
        with self.atomic() as conn:
            conn.execute(
                f"INSERT INTO tasks ({_TASK_COLUMNS}) VALUES ({_marks(TASKS)})", _task_row(task)
            )
            if task.parent_task_id is not None:
                conn.execute(
                    "UPDATE tasks SET subtask_count = subtask_count + 1 WHERE id = ?",
                    (task.parent_task_id,),
                )
            return self._append(conn, events)

    @_translated
    def subtask_count(self, task_id: str) -> int | None:
        """How many subtasks the task has, without reading them; None if there is no such task."""
        row = (
            self._conn()
            .execute("SELECT subtask_count FROM tasks WHERE id = ?", (task_id,))
            .fetchone()
        )
        return None if row is None else int(row[0])

    @_translated
    def insert_tasks(self, tasks: Sequence[Task], events: Sequence[EventDraft]) -> list[Event]:
        """Insert new tasks, in order, and append the events, all in one transaction."""
        with self.atomic() as conn:
            conn.executemany(
                f"INSERT INTO tasks ({_TASK_COLUMNS}) VALUES ({_marks(TASKS)})",
                [_task_row(task) for task in tasks],
            )
            conn.executemany(
                "UPDATE tasks SET subtask_count = subtask_count + 1 WHERE id = ?",
                [(task.parent_task_id,) for task in tasks if task.parent_task_id is not None],
            )
            return self._append(conn, events)

    @_translated
    def tasks_of_prd(self, prd: Prd) -> list[Task]:
        """Tasks from this PRD or another stored from the same file, oldest first."""
        conn = self._conn()
        # `resolved_path = NULL` is never true: a PRD without one is only itself.
        rows = conn.execute(
            f"SELECT {_TASK_COLUMNS} FROM tasks WHERE source_prd_id IN "
            "(SELECT ? UNION SELECT id FROM prds WHERE resolved_path = ?) ORDER BY seq",
            (prd.id, prd.resolved_path),
        ).fetchall()
        return self._rows_to_tasks(conn, rows)

    @_translated
    def replace_task(
        self, task: Task, expected_version: int, events: Sequence[EventDraft]
    ) -> list[Event]:
        """Replace a task only if its stored version is `expected_version`."""
        with self.atomic() as conn:
            cursor = conn.execute(
                f"UPDATE tasks SET {', '.join(f'{name}=?' for name in TASKS.columns[1:])} "
                "WHERE id=? AND version=?",
                (*_task_row(task)[1:], task.id, expected_version),
            )
            if cursor.rowcount != 1:
                raise VersionConflict(
                    f"task {task.id!r} is no longer at version {expected_version}"
                )
            return self._append(conn, events)

    @_translated
    def replace_statuses(
        self, changes: Sequence[tuple[Task, int]], events: Sequence[EventDraft]
    ) -> list[Event]:
        """Store many tasks' new status, version and updated_at, each at its expected version."""
        with self.atomic() as conn:
            # Only the changed columns: naming the others would rewrite their
            # indexes too (30 000 rows: 0.8 s instead of 0.14 s).
            cursor = conn.executemany(
                "UPDATE tasks SET status=?, version=?, updated_at=? WHERE id=? AND version=?",
                [
                    (int(task.status), task.version, task.updated_at, task.id, expected)
                    for task, expected in changes
                ],
            )
            if cursor.rowcount != len(changes):
                raise VersionConflict(
                    f"{len(changes) - cursor.rowcount} of {len(changes)} tasks changed meanwhile"
                )
            return self._append(conn, events)

    # --- events --------------------------------------------------------------

    def _append(self, conn: sqlite3.Connection, drafts: Sequence[EventDraft]) -> list[Event]:
        # Inside the write transaction we hold SQLite's only write lock, so
        # MAX+1 is gapless and never handed out twice.
        last = conn.execute("SELECT COALESCE(MAX(sequence), 0) FROM events").fetchone()[0]
        events = [commit_event(d, last + i, self._encode) for i, d in enumerate(drafts, start=1)]
        conn.executemany(
            _INSERT_EVENTS, [event_row(d, e) for d, e in zip(drafts, events, strict=True)]
        )
        return events

    @_translated
    def events_after(self, sequence: int, limit: int, max_bytes: int | None = None) -> list[Event]:
        """Return up to `limit` committed events with a greater sequence, in order, with bytes.

        With `max_bytes`, no event follows once their payloads reach it.
        """
        rows = self._conn().execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE sequence > ? ORDER BY sequence LIMIT ?",
            (sequence, limit),
        )
        events: list[Event] = []
        size = 0
        # SQLite steps row by row: the rows past the budget are never read.
        for row in rows:
            events.append(event_from_row(row))
            size += len(row[4])
            if max_bytes is not None and size >= max_bytes:
                break
        return events

    @_translated
    def last_sequence(self) -> int:
        """Return the sequence of the newest committed event, 0 when the log is empty."""
        row = self._conn().execute("SELECT COALESCE(MAX(sequence), 0) FROM events").fetchone()
        return int(row[0])

    # --- PRDs ----------------------------------------------------------------

    @_translated
    def insert_prd(self, prd: Prd) -> None:
        """Store a parsed PRD, with its markdown and resolved path when it has them."""
        with self.atomic() as conn:
            conn.execute(
                f"INSERT INTO prds ({_columns(PRDS)}) VALUES ({_marks(PRDS)})",
                PRDS.row(prd, _json_list),
            )

    @_translated
    def get_prd(self, prd_id: str) -> Prd | None:
        """Return the stored PRD (markdown included), or None if there is no such id."""
        row = (
            self._conn()
            .execute(f"SELECT {_columns(PRDS)} FROM prds WHERE id = ?", (prd_id,))
            .fetchone()
        )
        return None if row is None else PRDS.record_from(row, json.loads)

    # --- orchestration results -----------------------------------------------

    @_translated
    def insert_enhancement(self, enhancement: EnhancementRecord) -> None:
        """Store an enhancement of an existing task."""
        with self.atomic() as conn:
            conn.execute(
                f"INSERT INTO enhancements ({_columns(ENHANCEMENTS)}) "
                f"VALUES ({_marks(ENHANCEMENTS)})",
                ENHANCEMENTS.row(enhancement, _json_list),
            )

    @_translated
    def enhancements_of(self, task_id: str) -> list[EnhancementRecord]:
        """The task's stored enhancements, oldest first."""
        rows = self._conn().execute(
            f"SELECT {_columns(ENHANCEMENTS)} FROM enhancements WHERE task_id = ? ORDER BY seq",
            (task_id,),
        )
        return [ENHANCEMENTS.record_from(row, json.loads) for row in rows]

    @_translated
    def insert_comprehension_test(self, test: ComprehensionTestRecord) -> None:
        """Store a comprehension test of an existing task."""
        with self.atomic() as conn:
            conn.execute(
                f"INSERT INTO comprehension_tests ({_columns(COMPREHENSION_TESTS)}) "
                f"VALUES ({_marks(COMPREHENSION_TESTS)})",
                COMPREHENSION_TESTS.row(test, _json_list),
            )

    @_translated
    def comprehension_tests_of(self, task_id: str) -> list[ComprehensionTestRecord]:
        """The task's stored comprehension tests, oldest first."""
        rows = self._conn().execute(
            f"SELECT {_columns(COMPREHENSION_TESTS)} FROM comprehension_tests WHERE task_id = ? "
            "ORDER BY seq",
            (task_id,),
        )
        return [COMPREHENSION_TESTS.record_from(row, json.loads) for row in rows]

    def close(self) -> None:
        """Checkpoint the WAL into the main file and close every connection.

        A checkpoint that fails (a full disk) loses nothing: the WAL keeps
        every commit and the next start reads it.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            connections, self._connections = self._connections, []
        for i, conn in enumerate(connections):
            try:
                if i == 0:
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                conn.close()
            except sqlite3.Error as exc:
                log.warning("closing the database: %s; every commit is kept in its WAL", exc)
        if self._write_lock >= 0:
            os.close(self._write_lock)
            self._write_lock = -1


def _aborted(cause: BaseException) -> Callable[[], StoreFault]:
    # Each write left in the group gets a fresh exception of the same kind.
    if isinstance(cause, StoreFault):
        kind, message = type(cause), str(cause)
        return lambda: kind(message)
    return lambda: StoreUnavailable(
        "the database rolled the write transaction back; nothing was written, try again"
    )
