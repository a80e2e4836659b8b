"""Subtasks per parent are bounded, and adding one costs the same however many siblings it has.

The bound holds for subtasks an orchestration makes too, whatever runs at the
same time: the count is taken inside the commit's transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import uuid

import grpc
import pytest
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc
from rigger_server import wire
from rigger_server.domain import Task, TaskStatus, now_rfc3339
from rigger_server.events import Broadcaster
from rigger_server.sqlite_store import SqliteStore
from rigger_server.tasks import NewTask, TaskBook
from schemas import v2_database
from streams import add, all_tasks, assert_no_events_after, fails, log_head

from testkit.serverproc import ServerProcess


@pytest.fixture
def limited(project):
    proc = ServerProcess(project, extra_args=("--max-subtasks", "3")).start()
    yield proc
    proc.stop()


async def test_a_subtask_beyond_the_limit_is_resource_exhausted(limited):
    async with grpc.aio.insecure_channel(limited.address) as channel:
        stub = rigger_pb2_grpc.RiggerServiceStub(channel)
        parent = await add(stub, "parent")
        for i in range(3):
            await add(stub, f"child {i}", parent_task_id=parent.id)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await add(stub, "one too many", parent_task_id=parent.id)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--max-subtasks" in refused.value.details()
        assert "parent_task_id" in refused.value.details()
        other = await add(stub, "another parent")
        assert (await add(stub, "its child", parent_task_id=other.id)).parent_task_id == other.id
        got = await stub.GetTask(pb.GetTaskRequest(task_id=parent.id))
        assert len(got.task.subtask_ids) == 3


# A task the offline planner decomposes (score 7) along its three steps.
PRD = (
    "# Billing\n\n## Tasks\n\n- Migrate the billing database to Postgres\n"
    "  - Dump the old tables\n  - Load them into Postgres\n  - Switch the service over\n"
)


async def test_concurrent_orchestrations_in_rounds_never_take_a_parent_past_the_limit(limited):
    (limited.root / "billing.md").write_text(PRD)
    async with grpc.aio.insecure_channel(limited.address) as channel:
        stub = rigger_pb2_grpc.RiggerServiceStub(channel)
        generated = await stub.GenerateTasksFromPRD(
            pb.GenerateTasksFromPRDRequest(prd_id="billing.md")
        )
        (task,) = generated.tasks
        codes = []
        for _ in range(5):
            outcomes = await asyncio.gather(
                *(stub.OrchestrateTask(pb.OrchestrateTaskRequest(task_id=task.id)) for _ in "abc"),
                return_exceptions=True,
            )
            codes += [
                o.code() if isinstance(o, grpc.aio.AioRpcError) else grpc.StatusCode.OK
                for o in outcomes
            ]
            # As the issue did: back to TODO, to be orchestrated afresh.
            await stub.UpdateTask(pb.UpdateTaskRequest(task_id=task.id, status=pb.TASK_STATUS_TODO))
        got = await stub.GetTask(pb.GetTaskRequest(task_id=task.id))
    assert len(got.task.subtask_ids) == 3
    assert codes.count(grpc.StatusCode.OK) == 1, codes
    assert set(codes) <= {
        grpc.StatusCode.OK,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }, codes


async def test_a_decomposition_into_more_parts_than_the_limit_is_resource_exhausted(limited):
    async with grpc.aio.insecure_channel(limited.address) as channel:
        stub = rigger_pb2_grpc.RiggerServiceStub(channel)
        # No PRD, no steps: the four standard phases.
        task = await add(stub, "Migrate the billing database to Postgres")
        tasks, head = await all_tasks(stub), await log_head(stub)
        await fails(
            stub.OrchestrateTask(pb.OrchestrateTaskRequest(task_id=task.id)),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "adds 4",
            "--max-subtasks",
            "nothing was written",
        )
        assert await all_tasks(stub) == tasks
        await assert_no_events_after(stub, head)


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
