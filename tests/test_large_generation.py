"""Large generations: bounded in size, and all or nothing whatever their deadline.

A generation answered DEADLINE_EXCEEDED wrote nothing; one answered OK wrote
everything.
The server checks the caller's deadline inside the transaction right before
COMMIT (guard.py), with room left for what follows the commit, so a caller
whose deadline passed while its thousands of rows were being written never
finds them committed later. The sweep spreads deadlines over the time one
generation takes on this machine, so some calls run out while planning, some
while writing, and some finish.
"""

from __future__ import annotations

import dataclasses
import pathlib
import shutil
import sqlite3
import time

import grpc
import pytest
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc

from testkit.serverproc import ServerProcess

TASKS = 5000
EXAMPLE = pathlib.Path(__file__).resolve().parent.parent / "examples" / "PRD.md"
SWEEP = 10
OPTIONS = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]


@dataclasses.dataclass(frozen=True)
class Stored:
    """What the database holds: tasks (all, and not archived), events, the log's head."""

    tasks: int
    live: int
    events: int
    head: int


def stored(server: ServerProcess) -> Stored:
    with sqlite3.connect(f"file:{server.db}?mode=ro", uri=True) as db:
        tasks, live = db.execute(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE status != ?) FROM tasks",
            (pb.TASK_STATUS_ARCHIVED,),
        ).fetchone()
        events, head = db.execute(
            "SELECT COUNT(*), COALESCE(MAX(sequence), 0) FROM events"
        ).fetchone()
    return Stored(tasks, live, events, head)


def write_prd(server: ServerProcess) -> str:
    lines = "".join(f"- [ ] Deliver part {i} of the feature\n" for i in range(TASKS))
    (server.root / "big.md").write_text(f"# Big\n\n## Tasks\n\n{lines}")
    return "big.md"


async def test_every_generation_answered_deadline_exceeded_wrote_nothing_and_every_ok_one_all(
    server,
):
    path = write_prd(server)
    async with grpc.aio.insecure_channel(server.address, options=OPTIONS) as channel:
        stub = rigger_pb2_grpc.RiggerServiceStub(channel)
        prd_id = (await stub.ParsePRD(pb.ParsePRDRequest(prd_file_path=path))).prd_id
        request = pb.GenerateTasksFromPRDRequest(prd_id=prd_id, replace_existing=True)
        await stub.GenerateTasksFromPRD(request)
        # How long one replacing generation takes here and now, to spread the sweep over.
        started = time.monotonic()
        await stub.GenerateTasksFromPRD(request)
        took = time.monotonic() - started

        outcomes = []
        for step in range(SWEEP):
            timeout = took * (0.1 + 2.9 * step / (SWEEP - 1))
            before = stored(server)
            try:
                reply = await stub.GenerateTasksFromPRD(request, timeout=timeout)
                code = grpc.StatusCode.OK
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                reply = None
            assert code in (grpc.StatusCode.OK, grpc.StatusCode.DEADLINE_EXCEEDED), code
            # The writer runs writes in order: once this one is answered, the
            # generation's transaction has committed or been rolled back.
            await stub.AddTask(pb.AddTaskRequest(title=f"after step {step}"))
            after = stored(server)
            if code == grpc.StatusCode.OK:
                assert reply is not None and reply.tasks_generated == TASKS
                assert len(reply.archived_task_ids) == TASKS
                assert after.tasks == before.tasks + TASKS + 1
                assert after.live == before.live + 1
                assert after.events == before.events + 2 * TASKS + 1
            else:
                assert after.tasks == before.tasks + 1, f"{timeout:.2f} s: tasks were written"
                assert after.live == before.live + 1, f"{timeout:.2f} s: tasks were archived"
                assert after.events == before.events + 1, f"{timeout:.2f} s: events were logged"
            assert after.head == after.events  # gapless
            outcomes.append((round(timeout, 2), code.name))

        # One more without a deadline: a refused call committing late would show here.
        before = stored(server)
        await stub.GenerateTasksFromPRD(request)
        await stub.AddTask(pb.AddTaskRequest(title="last"))
        after = stored(server)
        assert after.events == before.events + 2 * TASKS + 1
    print(f"one generation took {took:.2f} s; sweep: {outcomes}")
    codes = {code for _, code in outcomes}
    assert codes == {"OK", "DEADLINE_EXCEEDED"}, f"the sweep missed one side: {outcomes}"


async def test_a_plan_beyond_max_generated_tasks_is_resource_exhausted_and_writes_nothing(
    project: pathlib.Path,
):
    shutil.copy(EXAMPLE, project / "PRD.md")  # plans 5 tasks
    server = ServerProcess(project, extra_args=("--max-generated-tasks", "4")).start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = rigger_pb2_grpc.RiggerServiceStub(channel)
            before = stored(server)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.GenerateTasksFromPRD(pb.GenerateTasksFromPRDRequest(prd_id="PRD.md"))
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "5 tasks" in refused.value.details()
            assert "--max-generated-tasks" in refused.value.details()
            assert stored(server) == before
    finally:
        server.stop()
