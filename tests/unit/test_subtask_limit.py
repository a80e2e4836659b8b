"""The subtask count: migrated with old databases, and the cost of adding a subtask."""

from __future__ import annotations

import contextlib
import sqlite3
import uuid

from rigger_server import wire
from rigger_server.domain import Task, TaskStatus, now_rfc3339
from rigger_server.events import Broadcaster
from rigger_server.sqlite_store import SqliteStore
from rigger_server.tasks import NewTask, TaskBook
from schemas import v2_database


class CountingStore(SqliteStore):
    """Counts SQLite virtual-machine steps: the work a call does, whatever the machine's speed."""

    steps = 0

    def _conn(self, **options: bool) -> sqlite3.Connection:
        conn = super()._conn(**options)
        conn.set_progress_handler(self._step, 1)
        return conn

    def _step(self) -> int:
        self.steps += 1
        return 0


def _task(parent_id: str | None = None) -> Task:
    now = now_rfc3339()
    return Task(
        id=str(uuid.uuid4()),
        title="a task",
        status=TaskStatus.TODO,
        created_at=now,
        updated_at=now,
        version=1,
        parent_task_id=parent_id,
    )


async def test_adding_a_subtask_costs_the_same_however_many_siblings_it_has(tmp_path):
    store = CountingStore(tmp_path / "tasks.db", wire.encode_event)
    book = TaskBook(store, Broadcaster(), tmp_path)
    try:
        few = await book.add_task(NewTask(title="few children"))
        many = await book.add_task(NewTask(title="many children"))
        with store.atomic():
            for _ in range(10):
                store.insert_task(_task(few.id), [])
            for _ in range(3000):
                store.insert_task(_task(many.id), [])

        async def steps_to_add_a_task(parent_id: str) -> int:
            store.steps = 0
            await book.add_task(NewTask(title="one more", parent_task_id=parent_id))
            return store.steps

        beside_few = await steps_to_add_a_task(few.id)
        beside_many = await steps_to_add_a_task(many.id)
    finally:
        await book.close()
    print(f"SQLite steps to add a child: {beside_few} beside 10, {beside_many} beside 3000")
    assert beside_many <= beside_few * 1.1


def test_a_version_2_database_is_migrated_with_its_subtasks_counted(tmp_path):
    db = tmp_path / "tasks.db"
    with contextlib.closing(v2_database(db)) as conn, conn:  # no counts in version 2
        for task_id, parent in (("p", None), ("c1", "p"), ("c2", "p")):
            conn.execute(
                "INSERT INTO tasks (id, title, status, parent_task_id, created_at, updated_at, "
                "version) VALUES (?, ?, 1, ?, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', 1)",
                (task_id, task_id, parent),
            )
    store = SqliteStore(db, wire.encode_event)
    try:
        assert store.subtask_count("p") == 2
        assert store.subtask_count("c1") == 0
        assert store.subtask_count("no such task") is None
    finally:
        store.close()
