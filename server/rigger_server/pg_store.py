"""The PostgreSQL store: one database shared by any number of replicas on any hosts.

Why synchronous psycopg here: `store.Store` is a synchronous protocol called
from the one writer thread (group commit, `writer.py`) and from reader
threads, so the store uses psycopg's sync connections from a
`psycopg_pool.ConnectionPool`. The writer thread holds one pooled connection
for the length of a group's transaction (nested `atomic()` blocks are
savepoints on it); each read borrows one for a single call. Hearing about
other replicas' commits is different work: a long wait on one connection that
feeds the event loop, so `pg_listener.py` LISTENs on an async connection of its
own, on the loop, where `LogTail.seen()` lives.

How replicas agree on one log. Every write transaction first locks the one
row of `rigger.log_head` (`SELECT sequence … FOR UPDATE`), so write
transactions from all replicas run one at a time, each knowing the head. Its
events take the next sequences, and their rows go in with the task change;
right before commit the row is set to the new head (one `UPDATE`, with the
`NOTIFY`). Because the lock is held until commit, sequence order is commit
order, and a savepoint rolled back gives its numbers back: the log is
gapless, and a reader whose snapshot holds event N holds every event before
it. Taking that lock first,
before any task row is read, is also what keeps replicas' writes from
deadlocking, and it means a task read inside a write transaction cannot change
before that transaction's compare-and-swap; the read says `FOR UPDATE` anyway,
so the invariant does not rest on the lock order alone. The `NOTIFY
rigger_log, '<new head>'` is delivered to the listeners only if the
transaction commits.

When PostgreSQL cannot be reached, every call raises `errors.Unavailable`
(the service answers UNAVAILABLE). So does one that takes too long: every
connection sets statement_timeout and lock_timeout (`--db-timeout-seconds`),
so a write waiting for a row lock another session holds gives up, and every
wait on a connection is bounded on this side too (`pg_stall.py`), for a
PostgreSQL that does not answer at all. A commit whose connection breaks is in
doubt: its events, if it did commit, reach every replica's subscribers through
the log, never through this replica's local fast path.

Schema changes are numbered migrations recorded in `rigger.schema_migrations`,
run by `rig init --db postgresql://…` (`migrate()`); a server only checks the
version (`PostgresStore` refuses a database that is uninitialised, older or
newer) so that replicas of different releases never migrate under each other.
"""

from __future__ import annotations

import contextlib
import select
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from rigger_server.db_target import DatabaseUnusable, redact
from rigger_server.domain import (
    ComprehensionTestRecord,
    EnhancementRecord,
    Event,
    EventDraft,
    EventEncoder,
    Prd,
    Task,
    commit_event,
)
from rigger_server.errors import Unavailable, VersionConflict
from rigger_server.limits import DB_STALL_SLACK_SECONDS, Limits
from rigger_server.pg_stall import BoundedConnection
from rigger_server.schema import (
    COMPREHENSION_TESTS,
    ENHANCEMENTS,
    EVENT_COLUMNS,
    EVENT_INSERT_COLUMNS,
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

# The channel every write transaction notifies with the log's new head.
CHANNEL = "rigger_log"
# A call waits this long for a pooled connection (PostgreSQL down: that long,
# then UNAVAILABLE).
CONNECT_WAIT_SECONDS = 3.0
POOL_MIN = 2
# The writer, TaskBook's readers and the log tail's reads, with room to spare.
POOL_MAX = 10
# libpq settings used unless the URL sets them: fail fast on a dead host and
# notice a silently vanished peer.
_CONNECT_DEFAULTS = {
    "connect_timeout": "5",
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "application_name": "rigger",
}


# Each schema step's DDL, kept as it was (schema.LEDGER numbers them).
# schema.FIRST_SCHEMA. Every object lives in the `rigger` schema, so a database
# shared with other applications stays tidy.
_FIRST_SCHEMA = """
        CREATE TABLE rigger.tasks (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- "newest first"
            id text NOT NULL UNIQUE,
            title text NOT NULL,
            status integer NOT NULL,
            assignee text,
            due_date text,
            source_transcript_id text,
            source_prd_id text,
            parent_task_id text REFERENCES rigger.tasks (id),
            complexity integer,
            reasoning text,
            context_files text[] NOT NULL DEFAULT '{}',
            dependencies text[] NOT NULL DEFAULT '{}',
            created_at text NOT NULL,
            updated_at text NOT NULL,
            version integer NOT NULL
        );
        CREATE INDEX tasks_status ON rigger.tasks (status, seq);
        CREATE INDEX tasks_assignee ON rigger.tasks (assignee, seq);
        CREATE INDEX tasks_parent ON rigger.tasks (parent_task_id, seq);
        CREATE TABLE rigger.events (
            sequence bigint PRIMARY KEY,
            event_id text NOT NULL,
            timestamp text NOT NULL,
            event_type smallint NOT NULL,
            task_id text NOT NULL,
            assignee text,
            payload bytea NOT NULL
        );
        -- The newest sequence handed out: every write transaction locks this
        -- one row first, which orders all replicas' commits.
        CREATE TABLE rigger.log_head (
            only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
            sequence bigint NOT NULL
        );
        INSERT INTO rigger.log_head (sequence) VALUES (0);
        CREATE TABLE rigger.prds (
            id text PRIMARY KEY,
            path text NOT NULL,
            title text NOT NULL,
            objectives text[] NOT NULL,
            tech_stack text[] NOT NULL,
            constraints text[] NOT NULL,
            parsed_at text NOT NULL
        );
        """
# schema.SUBTASK_COUNT.
_SUBTASK_COUNT = """
        ALTER TABLE rigger.tasks ADD COLUMN subtask_count integer NOT NULL DEFAULT 0;
        UPDATE rigger.tasks SET subtask_count = (
            SELECT COUNT(*) FROM rigger.tasks AS child WHERE child.parent_task_id = tasks.id
        );
        """
# schema.PLANNING.
_PLANNING = """
        ALTER TABLE rigger.prds ADD COLUMN markdown text;
        ALTER TABLE rigger.prds ADD COLUMN resolved_path text;
        CREATE INDEX prds_resolved_path ON rigger.prds (resolved_path);
        CREATE INDEX tasks_source_prd ON rigger.tasks (source_prd_id, seq);
        CREATE TABLE rigger.enhancements (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id text NOT NULL UNIQUE,
            task_id text NOT NULL REFERENCES rigger.tasks (id),
            timestamp text NOT NULL,
            enhancement_type text NOT NULL,
            content text NOT NULL,
            planner text NOT NULL,
            model text NOT NULL
        );
        CREATE INDEX enhancements_task ON rigger.enhancements (task_id, seq);
        CREATE TABLE rigger.comprehension_tests (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id text NOT NULL UNIQUE,
            task_id text NOT NULL REFERENCES rigger.tasks (id),
            timestamp text NOT NULL,
            test_type text NOT NULL,
            question text NOT NULL,
            options text[] NOT NULL DEFAULT '{}',
            correct_answer text NOT NULL,
            planner text NOT NULL,
            model text NOT NULL
        );
        CREATE INDEX comprehension_tests_task ON rigger.comprehension_tests (task_id, seq);
        """

# schema.PRD_ITEM: a generated task keeps the PRD item it was made for.
_PRD_ITEM = """
        ALTER TABLE rigger.tasks ADD COLUMN prd_item text;
        """

# Each step of schema.LEDGER that PostgreSQL records in rigger.schema_migrations.
MIGRATIONS: tuple[Migration[str], ...] = migrations(
    "postgres",
    {
        FIRST_SCHEMA: _FIRST_SCHEMA,
        SUBTASK_COUNT: _SUBTASK_COUNT,
        PLANNING: _PLANNING,
        PRD_ITEM: _PRD_ITEM,
    },
)
SCHEMA_VERSION = MIGRATIONS[-1].version

_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS rigger.schema_migrations (
    version integer PRIMARY KEY,
    description text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
# Any constant: rig init runs hold it while migrating, so two at once take turns.
_MIGRATION_LOCK = 0x72696767  # "rigg"


# Lists are text[] columns: psycopg sends a Python list as an array, and
# reads one back as a list.
def _insert(table: Table[Any], name: str) -> str:
    return (
        f"INSERT INTO rigger.{name} ({', '.join(table.columns)}) "
        f"VALUES ({', '.join(['%s'] * len(table.columns))})"
    )


def _row(table: Table[Any], record: Any) -> tuple[object, ...]:
    return table.row(record, list)


# A task's columns, then its subtasks' ids (the last value of each row).
_SELECT_TASKS = (
    f"SELECT {', '.join(f't.{name}' for name in TASKS.columns)}, "
    "ARRAY(SELECT c.id FROM rigger.tasks c WHERE c.parent_task_id = t.id ORDER BY c.seq) "
    "FROM rigger.tasks t"
)
_EVENT_COLUMNS = ", ".join(EVENT_COLUMNS)


def _task_from_row(row: Sequence[Any]) -> Task:
    return TASKS.record_from(row[:-1], tuple, subtask_ids=tuple(row[-1]))


@contextlib.contextmanager
def _reachable() -> Iterator[None]:
    """PostgreSQL unreachable, a pool timeout, a broken connection: Unavailable."""
    try:
        yield
    except psycopg.OperationalError as exc:
        raise Unavailable(f"the database is unavailable: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_idle(conn: psycopg.Connection[Any]) -> None:
    """Before a pooled connection is handed out: raise if it is broken.

    An idle connection has nothing to read unless the server wrote to it: a
    restarting PostgreSQL's goodbye, or end-of-file. Only then is it pinged
    (and, broken, replaced by the pool), so a call after a restart does not
    fail on a stale connection, and a healthy one costs no round trip.
    """
    readable, _, _ = select.select([conn.fileno()], [], [], 0)
    if readable or conn.broken:
        ConnectionPool.check_connection(conn)


def connection_kwargs(url: str) -> dict[str, Any]:
    """libpq settings for `url`: the defaults above, unless the URL sets them."""
    given = psycopg.conninfo.conninfo_to_dict(url)
    return {key: value for key, value in _CONNECT_DEFAULTS.items() if key not in given}


def schema_version(conn: psycopg.Connection[Any]) -> int:
    """The newest migration applied to the database; 0 when Rigger never initialised it."""
    row = conn.execute("SELECT to_regclass('rigger.schema_migrations')").fetchone()
    if row is None or row[0] is None:
        return 0
    row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM rigger.schema_migrations").fetchone()
    return int(row[0]) if row else 0


def _check_version(found: int, url: str) -> None:
    where = redact(url)
    if found > SCHEMA_VERSION:
        raise DatabaseUnusable(
            f"{where}: database schema version {found} is newer than this Rigger's "
            f"({SCHEMA_VERSION}); upgrade Rigger"
        )
    if found == 0:
        raise DatabaseUnusable(
            f"{where}: no Rigger schema in this database; run `rig init --db URL` first"
        )
    if found < SCHEMA_VERSION:
        raise DatabaseUnusable(
            f"{where}: database schema version {found} is older than this Rigger's "
            f"({SCHEMA_VERSION}); run `rig init --db URL` to migrate it"
        )


def migrate(url: str) -> tuple[int, int]:
    """Bring the database at `url` up to SCHEMA_VERSION; return (version before, after).

    Idempotent: a current database is only read. Raises DatabaseUnusable when
    it cannot be reached or is newer than this Rigger.
    """
    try:
        with psycopg.connect(url, autocommit=True, **connection_kwargs(url)) as conn:
            before = schema_version(conn)
            if before == SCHEMA_VERSION:
                return before, before
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                conn.execute("CREATE SCHEMA IF NOT EXISTS rigger")
                conn.execute(_MIGRATIONS_TABLE)
                before = schema_version(conn)  # again: another rig init may have run
                if before > SCHEMA_VERSION:
                    _check_version(before, url)
                for step in MIGRATIONS:
                    if step.version > before:
                        conn.execute(step.change.encode())
                        conn.execute(
                            "INSERT INTO rigger.schema_migrations (version, description) "
                            "VALUES (%s, %s)",
                            (step.version, step.description),
                        )
            return before, SCHEMA_VERSION
    except psycopg.OperationalError as exc:
        raise DatabaseUnusable(f"cannot reach {redact(url)}: {_first_line(exc)}") from exc


class PostgresStore:
    """A Store on one PostgreSQL database, shared with every other replica on it."""

    def __init__(
        self, url: str, encode: EventEncoder, *, timeout_seconds: float | None = None
    ) -> None:
        self.url = url
        self._encode = encode
        self._local = threading.local()
        self.timeout_seconds = timeout_seconds or Limits().db_timeout_seconds
        self._pool: ConnectionPool[BoundedConnection] = ConnectionPool(
            url,
            connection_class=BoundedConnection,
            configure=self._configure,
            kwargs={"autocommit": True, **connection_kwargs(url)},
            min_size=POOL_MIN,
            max_size=POOL_MAX,
            timeout=CONNECT_WAIT_SECONDS,
            check=_check_idle,
            name="rigger",
            open=False,
        )
        try:
            # One plain connection first: an unreachable server fails at once,
            # with libpq's reason, rather than after the pool's patience.
            with psycopg.connect(url, autocommit=True, **connection_kwargs(url)) as conn:
                _check_version(schema_version(conn), url)
            self._pool.open(wait=True, timeout=10.0)
        except psycopg.OperationalError as exc:
            self._pool.close()
            raise DatabaseUnusable(f"cannot reach {redact(url)}: {_first_line(exc)}") from exc
        except BaseException:
            self._pool.close()
            raise

    # --- connections and transactions ----------------------------------------

    def _configure(self, conn: BoundedConnection) -> None:
        """A new pooled connection: its statements and lock waits, and its waits here, bounded."""
        conn.stall_seconds = self.timeout_seconds + DB_STALL_SLACK_SECONDS
        milliseconds = str(max(1, round(self.timeout_seconds * 1000)))
        conn.execute(
            "SELECT set_config('statement_timeout', %s, false), "
            "set_config('lock_timeout', %s, false)",
            (milliseconds, milliseconds),
        )

    @contextlib.contextmanager
    def _reading(self) -> Iterator[psycopg.Connection[Any]]:
        """The write transaction's connection on its thread, else a pooled one."""
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is not None:
            with _reachable():
                yield conn
            return
        with _reachable(), self._pool.connection() as pooled:
            yield pooled

    @property
    def _in_write(self) -> bool:
        return getattr(self._local, "conn", None) is not None

    @contextlib.contextmanager
    def atomic(
        self, before_commit: Callable[[], None] | None = None
    ) -> Iterator[psycopg.Connection[Any]]:
        """Writes inside commit together or not at all; nested, a savepoint.

        The outermost calls `before_commit` after its last statement (the
        head's update), right before COMMIT.
        """
        local = self._local
        conn: psycopg.Connection[Any] | None = getattr(local, "conn", None)
        if conn is not None:
            # The head as it was, for when the savepoint's writes are undone.
            head = local.head
            try:
                with _reachable(), conn.transaction():
                    yield conn
            except BaseException:
                local.head = head
                raise
            return
        with _reachable(), self._pool.connection() as conn:
            local.conn = conn
            try:
                with conn.transaction():
                    # First, before anything is read: see the module docstring.
                    row = conn.execute("SELECT sequence FROM rigger.log_head FOR UPDATE").fetchone()
                    local.head = local.start = int(row[0])  # type: ignore[index]
                    yield conn
                    if local.head != local.start:
                        conn.execute(
                            "WITH head AS (UPDATE rigger.log_head SET sequence = %s "
                            "RETURNING sequence) SELECT pg_notify(%s, sequence::text) FROM head",
                            (local.head, CHANNEL),
                        )
                    if before_commit is not None:
                        before_commit()
            finally:
                local.conn = None

    # --- tasks ---------------------------------------------------------------

    def get_task(self, task_id: str) -> Task | None:
        """Return the task, or None; inside a write transaction, locked until it ends."""
        lock = " FOR UPDATE OF t" if self._in_write else ""
        with self._reading() as conn:
            row = conn.execute(f"{_SELECT_TASKS} WHERE t.id = %s{lock}", (task_id,)).fetchone()
        return None if row is None else _task_from_row(row)

    def list_tasks(self, query: TaskQuery) -> tuple[list[Task], int]:
        """Return one page of matching tasks, newest first, and the total match count."""
        clause, args = query.sql_condition("%s", "t.")
        with self._reading() as conn, conn.transaction():
            if not self._in_write:
                # One snapshot for the page and its count.
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            count = conn.execute(f"SELECT COUNT(*) FROM rigger.tasks t WHERE {clause}", args)
            total = int(count.fetchone()[0])  # type: ignore[index]
            rows = conn.execute(
                f"{_SELECT_TASKS} WHERE {clause} ORDER BY t.seq DESC LIMIT %s OFFSET %s",
                [*args, query.limit, query.offset],
            ).fetchall()
        return [_task_from_row(row) for row in rows], total

    def insert_task(self, task: Task, events: Sequence[EventDraft]) -> list[Event]:
        """Insert a new task and append its events, atomically."""
        with self.atomic() as conn:
            conn.execute(_insert(TASKS, "tasks"), _row(TASKS, task))
            if task.parent_task_id is not None:
                conn.execute(
                    "UPDATE rigger.tasks SET subtask_count = subtask_count + 1 WHERE id = %s",
                    (task.parent_task_id,),
                )
            return self._append(conn, events)

    def subtask_count(self, task_id: str) -> int | None:
        """How many subtasks the task has, without reading them; None if there is no such task."""
        with self._reading() as conn:
            row = conn.execute(
                "SELECT subtask_count FROM rigger.tasks WHERE id = %s", (task_id,)
            ).fetchone()
        return None if row is None else int(row[0])

    def replace_task(
        self, task: Task, expected_version: int, events: Sequence[EventDraft]
    ) -> list[Event]:
        """Replace a task only if its stored version is `expected_version`."""
        with self.atomic() as conn:
            assignments = ", ".join(f"{name} = %s" for name in TASKS.columns[1:])
            cursor = conn.execute(
                f"UPDATE rigger.tasks SET {assignments} WHERE id = %s AND version = %s",
                [*_row(TASKS, task)[1:], task.id, expected_version],
            )
            if cursor.rowcount != 1:
                raise VersionConflict(
                    f"task {task.id!r} is no longer at version {expected_version}"
                )
            return self._append(conn, events)

    def replace_statuses(
        self, changes: Sequence[tuple[Task, int]], events: Sequence[EventDraft]
    ) -> list[Event]:
        """Store many tasks' new status, version and updated_at, each at its expected version."""
        with self.atomic() as conn:
            with conn.cursor() as cursor:
                cursor.executemany(
                    "UPDATE rigger.tasks SET status = %s, version = %s, updated_at = %s "
                    "WHERE id = %s AND version = %s",
                    [
                        (int(task.status), task.version, task.updated_at, task.id, expected)
                        for task, expected in changes
                    ],
                )
                if cursor.rowcount != len(changes):
                    raise VersionConflict(
                        f"{len(changes) - cursor.rowcount} of {len(changes)} tasks changed "
                        "meanwhile"
                    )
            return self._append(conn, events)

    # --- events --------------------------------------------------------------

    def _append(self, conn: psycopg.Connection[Any], drafts: Sequence[EventDraft]) -> list[Event]:
        if not drafts:
            return []
        # This transaction holds the head row's lock (atomic()), so nobody
        # else can take these numbers; the row itself is updated once, at
        # commit, and a savepoint undone gives them back (atomic()).
        first = self._local.head + 1
        events = [commit_event(d, first + i, self._encode) for i, d in enumerate(drafts)]
        self._local.head += len(drafts)
        with conn.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO rigger.events ({', '.join(EVENT_INSERT_COLUMNS)}) "
                f"VALUES ({', '.join(['%s'] * len(EVENT_INSERT_COLUMNS))})",
                [event_row(d, e) for d, e in zip(drafts, events, strict=True)],
            )
        return events

    def events_after(self, sequence: int, limit: int, max_bytes: int | None = None) -> list[Event]:
        """Return up to `limit` committed events with a greater sequence, in order, with bytes.

        With `max_bytes`, no event follows once their payloads reach it.
        """
        with self._reading() as conn, conn.cursor(binary=True) as cursor:
            if max_bytes is None:
                cursor.execute(
                    f"SELECT {_EVENT_COLUMNS} FROM rigger.events WHERE sequence > %s "
                    "ORDER BY sequence LIMIT %s",
                    (sequence, limit),
                )
            else:
                # The budget applies in the database: the whole page arrives
                # at once, so rows past it must not be sent at all. The sizes
                # come from the stored values' headers, without reading them.
                cursor.execute(
                    f"SELECT {_EVENT_COLUMNS} FROM ("
                    f"SELECT {_EVENT_COLUMNS}, "
                    "sum(octet_length(payload)) OVER (ORDER BY sequence) AS upto "
                    "FROM rigger.events WHERE sequence > %s ORDER BY sequence LIMIT %s"
                    ") AS page WHERE upto - octet_length(payload) < %s ORDER BY sequence",
                    (sequence, limit, max_bytes),
                )
            rows = cursor.fetchall()
        return [event_from_row(row) for row in rows]

    def last_sequence(self) -> int:
        """Return the sequence of the newest committed event, 0 when the log is empty."""
        with self._reading() as conn:
            row = conn.execute("SELECT sequence FROM rigger.log_head").fetchone()
        return int(row[0]) if row else 0

    # --- PRDs ----------------------------------------------------------------

    def insert_prd(self, prd: Prd) -> None:
        """Store a parsed PRD, with its markdown and resolved path when it has them."""
        with self.atomic() as conn:
            conn.execute(_insert(PRDS, "prds"), _row(PRDS, prd))

    def get_prd(self, prd_id: str) -> Prd | None:
        """Return the stored PRD (markdown included), or None if there is no such id."""
        with self._reading() as conn:
            row = conn.execute(
                f"SELECT {', '.join(PRDS.columns)} FROM rigger.prds WHERE id = %s", (prd_id,)
            ).fetchone()
        return None if row is None else PRDS.record_from(row, tuple)

    def insert_tasks(self, tasks: Sequence[Task], events: Sequence[EventDraft]) -> list[Event]:
        """Insert new tasks, in order, and append the events, all in one transaction."""
        with self.atomic() as conn:
            with conn.cursor() as cursor:
                cursor.executemany(_insert(TASKS, "tasks"), [_row(TASKS, task) for task in tasks])
                children = [(t.parent_task_id,) for t in tasks if t.parent_task_id is not None]
                if children:
                    cursor.executemany(
                        "UPDATE rigger.tasks SET subtask_count = subtask_count + 1 WHERE id = %s",
                        children,
                    )
            return self._append(conn, events)

    def tasks_of_prd(self, prd: Prd) -> list[Task]:
        """Tasks from this PRD or another stored from the same file, oldest first."""
        with self._reading() as conn:
            # `resolved_path = NULL` is never true: a PRD without one is only itself.
            rows = conn.execute(
                f"{_SELECT_TASKS} WHERE t.source_prd_id = %s OR t.source_prd_id IN "
                "(SELECT id FROM rigger.prds WHERE resolved_path = %s) ORDER BY t.seq",
                (prd.id, prd.resolved_path),
            ).fetchall()
        return [_task_from_row(row) for row in rows]

    # --- orchestration results -----------------------------------------------

    def insert_enhancement(self, enhancement: EnhancementRecord) -> None:
        """Store an enhancement of an existing task."""
        with self.atomic() as conn:
            conn.execute(_insert(ENHANCEMENTS, "enhancements"), _row(ENHANCEMENTS, enhancement))

    def enhancements_of(self, task_id: str) -> list[EnhancementRecord]:
        """The task's stored enhancements, oldest first."""
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT {', '.join(ENHANCEMENTS.columns)} FROM rigger.enhancements "
                "WHERE task_id = %s ORDER BY seq",
                (task_id,),
            ).fetchall()
        return [ENHANCEMENTS.record_from(row, tuple) for row in rows]

    def insert_comprehension_test(self, test: ComprehensionTestRecord) -> None:
        """Store a comprehension test of an existing task."""
        with self.atomic() as conn:
            conn.execute(
                _insert(COMPREHENSION_TESTS, "comprehension_tests"), _row(COMPREHENSION_TESTS, test)
            )

    def comprehension_tests_of(self, task_id: str) -> list[ComprehensionTestRecord]:
        """The task's stored comprehension tests, oldest first."""
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT {', '.join(COMPREHENSION_TESTS.columns)} FROM rigger.comprehension_tests "
                "WHERE task_id = %s ORDER BY seq",
                (task_id,),
            ).fetchall()
        return [COMPREHENSION_TESTS.record_from(row, tuple) for row in rows]

    def close(self) -> None:
        """Close every connection; the store is unusable afterwards."""
        self._pool.close()
