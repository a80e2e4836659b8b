"""The tools `rig mcp` offers: each one or a few rigger.v1 calls, answered in the JSON form.

A tool's structured result is the JSON form (console/jsonform.py) of the
gRPC response it stands for, so an agent sees what any other client sees.
A call the server refuses, or cannot be made, is a tool error reading
`<STATUS>: <the server's message>`; the MCP server itself goes on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import grpc
from google.protobuf.message import Message
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field
from rigger.v1 import rigger_pb2 as pb
from rigger_client.connect import stub

from rigger_server import __version__
from rigger_server.console import listing, statuses
from rigger_server.console.jsonform import to_json
from rigger_server.console.numbers import UINT32_MAX, UINT64_MAX
from rigger_server.console.statuses import StatusName
from rigger_server.console.tasks import TestType
from rigger_server.console.watch import announced_head

if TYPE_CHECKING:
    from grpc import aio
    from rigger.v1.rigger_pb2_grpc import RiggerServiceAsyncStub

Reply = TypeVar("Reply", bound=Message)

# Most tasks or events one call returns: enough to work with, small enough
# for a model's context.
MAX_PAGE = 200

TaskId = Annotated[str, Field(description="a task id")]
Model = Annotated[str, Field(description="model to plan with; empty: the server's default")]

INSTRUCTIONS = (
    "Rigger's tasks. Every change is made by the Rigger server and broadcast to its "
    "subscribers. Tasks are JSON objects with the rigger.v1 Task fields; statuses are "
    "TASK_STATUS_* names. Errors read '<gRPC status>: <message>'."
)

_READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)
_WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
_REPLACE = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)
ANNOTATIONS = {
    "list_tasks": _READ,
    "get_task": _READ,
    "next_task": _READ,
    "list_events": _READ,
    "add_task": _WRITE,
    "update_task": _WRITE,
    "parse_prd": _WRITE,
    "orchestrate_task": _WRITE,
    "generate_tasks": _REPLACE,
    "delete_task": _REPLACE,
}


class RiggerTools:
    """The tools, bound to one channel to `rig grpc`."""

    def __init__(self, rigger: RiggerServiceAsyncStub, timeout: float) -> None:
        self.rigger = rigger
        self.timeout = timeout

    async def _call(self, method: Callable[..., Awaitable[Reply]], request: Message) -> Reply:
        try:
            return await method(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as err:
            raise _refusal(err) from None

    async def list_tasks(
        self,
        status: StatusName | None = None,
        assignee: str | None = None,
        limit: Annotated[int, Field(ge=1, le=MAX_PAGE)] = 50,
        offset: Annotated[int, Field(ge=0, le=UINT32_MAX)] = 0,
    ) -> dict[str, Any]:
        """List tasks, newest first; archived ones only with status ARCHIVED.

        Returns {tasks: [Task], total_count: all matching tasks}.
        """
        request = pb.ListTasksRequest(limit=limit, offset=offset)
        if status is not None:
            request.status = statuses.parse(status)
        if assignee is not None:
            request.assignee = assignee
        return to_json(await self._call(self.rigger.ListTasks, request))

    async def get_task(self, task_id: TaskId) -> dict[str, Any]:
        """One task by id, archived or not. Returns {task: Task}."""
        request = pb.GetTaskRequest(task_id=task_id)
        return to_json(await self._call(self.rigger.GetTask, request))

    async def add_task(
        self,
        title: str,
        assignee: str | None = None,
        due_date: Annotated[str | None, Field(description="YYYY-MM-DD")] = None,
        source_prd_id: str | None = None,
        parent_task_id: str | None = None,
    ) -> dict[str, Any]:
        """Create a task in TODO. Returns {task: Task}."""
        request = pb.AddTaskRequest(title=title)
        _set(request, assignee=assignee, due_date=due_date, source_prd_id=source_prd_id)
        _set(request, parent_task_id=parent_task_id)
        return to_json(await self._call(self.rigger.AddTask, request))

    async def update_task(
        self,
        task_id: TaskId,
        status: StatusName | None = None,
        assignee: Annotated[str | None, Field(description="'' unassigns")] = None,
        due_date: Annotated[str | None, Field(description="YYYY-MM-DD; '' clears")] = None,
        title: str | None = None,
        expected_version: Annotated[
            int | None, Field(ge=0, le=UINT64_MAX, description="fail unless still this")
        ] = None,
    ) -> dict[str, Any]:
        """Change the fields given; the others stay. Returns {task: Task}."""
        request = pb.UpdateTaskRequest(task_id=task_id)
        if status is not None:
            request.status = statuses.parse(status)
        _set(request, assignee=assignee, due_date=due_date, title=title)
        if expected_version is not None:
            request.expected_version = expected_version
        return to_json(await self._call(self.rigger.UpdateTask, request))

    async def next_task(self, assignee: str | None = None) -> dict[str, Any]:
        """The oldest TODO task whose dependencies are all COMPLETED.

        Returns {task: Task}, or {task: null} when no task is ready.
        """
        query = pb.ListTasksRequest(status=pb.TASK_STATUS_TODO)
        _set(query, assignee=assignee)
        try:
            task = await self._oldest_ready(query)
        except grpc.aio.AioRpcError as err:
            raise _refusal(err) from None
        return {"task": None if task is None else to_json(task)}

    async def _oldest_ready(self, query: pb.ListTasksRequest) -> pb.Task | None:
        end = await listing.count(self.rigger, query, self.timeout)
        done: dict[str, bool] = {}
        # The server lists newest first: read its pages from the last one
        # back, as far as rig reads for one answer.
        for _ in range(0, listing.SCAN_LIMIT, listing.PAGE):
            if end <= 0:
                break
            start = max(0, end - listing.PAGE)
            page = pb.ListTasksRequest(offset=start, limit=end - start)
            page.MergeFrom(query)
            reply = await self.rigger.ListTasks(page, timeout=self.timeout)
            for task in reversed(reply.tasks):
                if await self._all_done(task.dependencies, done):
                    return task
            end = start
        return None

    async def _all_done(self, task_ids: Sequence[str], done: dict[str, bool]) -> bool:
        for task_id in task_ids:
            if task_id not in done:
                request = pb.GetTaskRequest(task_id=task_id)
                try:
                    reply = await self.rigger.GetTask(request, timeout=self.timeout)
                    done[task_id] = reply.task.status == pb.TASK_STATUS_COMPLETED
                except grpc.aio.AioRpcError as err:
                    if err.code() != grpc.StatusCode.NOT_FOUND:
                        raise
                    done[task_id] = False  # a dependency that does not exist is not done
            if not done[task_id]:
                return False
        return True

    async def parse_prd(
        self,
        prd_file_path: Annotated[str, Field(description="relative to the server's project root")],
    ) -> dict[str, Any]:
        """Parse a PRD markdown file and store it.

        Returns {prd_id, prd_title, objectives, tech_stack, constraints}.
        """
        request = pb.ParsePRDRequest(prd_file_path=prd_file_path)
        return to_json(await self._call(self.rigger.ParsePRD, request))

    async def generate_tasks(
        self,
        prd_id: Annotated[str, Field(description="a prd_id from parse_prd, or a .md path")],
        model: Model = "",
        replace_existing: Annotated[
            bool, Field(description="archive the PRD's TODO tasks and plan afresh")
        ] = False,
    ) -> dict[str, Any]:
        """Plan a PRD's tasks and create them, all or none.

        Returns {tasks, tasks_generated, planner, model, prd_id, archived_task_ids}.
        """
        request = pb.GenerateTasksFromPRDRequest(
            prd_id=prd_id, model=model, replace_existing=replace_existing
        )
        return to_json(await self._call(self.rigger.GenerateTasksFromPRD, request))

    async def orchestrate_task(
        self,
        task_id: TaskId,
        model: Model = "",
        test_type: TestType = "short_answer",
        expected_version: Annotated[int | None, Field(ge=0, le=UINT64_MAX)] = None,
    ) -> dict[str, Any]:
        """Orchestrate a task: enhance it and write a comprehension test, or split it.

        Returns {task: Task, result: {routing_decision, enhancement, comprehension_test,
        subtasks, planner, model, complexity_score, routing_reasons, success}}.
        """
        request = pb.OrchestrateTaskRequest(task_id=task_id, model=model, test_type=test_type)
        if expected_version is not None:
            request.expected_version = expected_version
        return to_json(await self._call(self.rigger.OrchestrateTask, request))

    async def delete_task(self, task_id: TaskId) -> dict[str, Any]:
        """Archive a task. Returns {success: true}."""
        request = pb.DeleteTaskRequest(task_id=task_id)
        return to_json(await self._call(self.rigger.DeleteTask, request))

    async def list_events(
        self,
        after_sequence: Annotated[int, Field(ge=0, le=UINT64_MAX)] = 0,
        limit: Annotated[int, Field(ge=1, le=MAX_PAGE)] = 50,
    ) -> dict[str, Any]:
        """The task events after after_sequence, oldest first, up to the newest.

        Returns {events: [TaskEvent], head_sequence}; for more, pass the last
        event's sequence as after_sequence.
        """
        request = pb.SubscribeToTaskEventBatchesRequest(after_sequence=after_sequence)
        call = self.rigger.SubscribeToTaskEventBatches(request, timeout=self.timeout)
        events: list[pb.TaskEvent] = []
        try:
            head = await announced_head(call)
            if head is None:
                raise ToolError("UNKNOWN: the server announced no head sequence")
            # The log has no gaps: every event up to the head is there to read.
            if head > after_sequence:
                async for batch in call:
                    events.extend(batch.events)
                    if len(events) >= limit or events[-1].sequence >= head:
                        break
        except grpc.aio.AioRpcError as err:
            raise _refusal(err) from None
        finally:
            call.cancel()
        return {"events": [to_json(e) for e in events[:limit]], "head_sequence": head}


def _refusal(err: grpc.aio.AioRpcError) -> ToolError:
    """A failed call as the tool error the agent reads: the status, then the server's words."""
    return ToolError(f"{err.code().name}: {err.details()}")


def _set(message: Message, **fields: str | None) -> None:
    for name, value in fields.items():
        if value is not None:
            setattr(message, name, value)


def build_server(channel: aio.Channel, names: Sequence[str], timeout: float) -> MCPServer:
    """An MCP server offering the tools `names`, each calling the server on `channel`."""
    tools = RiggerTools(stub(channel), timeout)
    server: MCPServer = MCPServer("rigger", instructions=INSTRUCTIONS, version=__version__)
    for name in names:
        server.add_tool(getattr(tools, name), annotations=ANNOTATIONS[name])
    return server
