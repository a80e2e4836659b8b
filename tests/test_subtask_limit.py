"""Subtasks per parent are bounded, and adding one costs the same however many siblings it has.

The bound holds for subtasks an orchestration makes too, whatever runs at the
same time: the count is taken inside the commit's transaction.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc
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
        decompositions = 0
        for _ in range(5):
            outcomes = await asyncio.gather(
                *(stub.OrchestrateTask(pb.OrchestrateTaskRequest(task_id=task.id)) for _ in "abc"),
                return_exceptions=True,
            )
            codes += [
                o.code() if isinstance(o, grpc.aio.AioRpcError) else grpc.StatusCode.OK
                for o in outcomes
            ]
            # An orchestration that reads the task once another has decomposed it
            # answers OK with "pass" (nothing ran): only "decompose" wrote subtasks.
            decompositions += sum(
                not isinstance(o, BaseException) and o.result.routing_decision == "decompose"
                for o in outcomes
            )
            # As the issue did: back to TODO, to be orchestrated afresh.
            await stub.UpdateTask(pb.UpdateTaskRequest(task_id=task.id, status=pb.TASK_STATUS_TODO))
        got = await stub.GetTask(pb.GetTaskRequest(task_id=task.id))
    assert len(got.task.subtask_ids) == 3
    assert decompositions == 1, codes
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
