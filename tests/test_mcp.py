"""`rig mcp` through the MCP SDK's own stdio client, against a real `rig grpc`.

Each tool's structured result is checked against what the gRPC API answers,
in the JSON form of console/jsonform.py.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.types import CallToolResult
from rigcli import rig
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc
from rigger_server.console import exitcodes
from rigger_server.console.jsonform import to_json
from rigger_server.console.mcp_command import DEFAULT_TOOLS, OTHER_TOOLS

from testkit.serverproc import ServerProcess
from testkit.wait import wait_until_async

REPO = pathlib.Path(__file__).resolve().parent.parent
CLI_DOC = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
EXAMPLE_PRD = REPO / "examples" / "PRD.md"
# What docs/cli.md tells an MCP client to run (tests/test_task_cli.py checks its shape).
SNIPPET = json.loads(re.findall(r"```json\n(.*?)```", CLI_DOC, re.S)[0])["mcpServers"]["rigger"]
# Every tool definition is sent to the model on every turn: the default set
# stays below this many bytes of JSON (about 2000 tokens).
DEFAULT_TOOLS_BUDGET = 8000


@contextlib.asynccontextmanager
async def mcp_session(address: str, log: pathlib.Path, *extra: str) -> AsyncIterator[ClientSession]:
    """`rig mcp` as docs/cli.md configures it, pointed at `address`, as an initialised session."""
    rig_script = shutil.which(SNIPPET["command"], path=str(pathlib.Path(sys.executable).parent))
    assert rig_script is not None, "pip install -e . puts `rig` beside the interpreter"
    args = [arg.replace("localhost:50051", address) for arg in SNIPPET["args"]]
    params = StdioServerParameters(command=rig_script, args=[*args, *extra])
    with log.open("a") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session


@pytest.fixture(scope="module")
def api(shared_server: ServerProcess) -> Iterator[rigger_pb2_grpc.RiggerServiceStub]:
    """A blocking stub on the shared server: what the tools' results are checked against."""
    with shared_server.channel() as channel:
        yield rigger_pb2_grpc.RiggerServiceStub(channel)


async def _ok(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await session.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def _error(session: ClientSession, tool: str, **arguments: Any) -> str:
    result: CallToolResult = await session.call_tool(tool, arguments)
    assert result.is_error, result.structured_content
    return " ".join(getattr(block, "text", "") for block in result.content)


def _task(api, task_id: str) -> dict[str, Any]:
    return to_json(api.GetTask(pb.GetTaskRequest(task_id=task_id)).task)


def _prd(root: pathlib.Path) -> str:
    name = f"prd-{uuid.uuid4().hex[:8]}.md"
    shutil.copy(EXAMPLE_PRD, root / name)
    return name


async def test_tools_list_offers_the_default_tools_typed(shared_server, tmp_path):
    async with mcp_session(shared_server.address, tmp_path / "mcp.log") as session:
        tools = (await session.list_tools()).tools
    assert [tool.name for tool in tools] == list(DEFAULT_TOOLS)
    for tool in tools:
        assert tool.description, tool.name
        assert tool.input_schema["type"] == "object", tool.name
        assert tool.output_schema is not None, tool.name
    by_name = {tool.name: tool for tool in tools}
    status = by_name["update_task"].input_schema["properties"]["status"]
    assert "IN_PROGRESS" in json.dumps(status)
    assert by_name["get_task"].input_schema["required"] == ["task_id"]
    size = len(json.dumps([t.model_dump(mode="json", exclude_none=True) for t in tools]))
    assert size < DEFAULT_TOOLS_BUDGET, size


async def test_the_task_tools_answer_as_the_grpc_api_does(shared_server, api, tmp_path):
    who = f"who-{uuid.uuid4().hex[:8]}"
    async with mcp_session(shared_server.address, tmp_path / "mcp.log") as session:
        added = await _ok(session, "add_task", title="from an agent", assignee=who)
        task_id = added["task"]["id"]
        assert added == {"task": _task(api, task_id)}
        assert await _ok(session, "get_task", task_id=task_id) == {"task": _task(api, task_id)}
        updated = await _ok(
            session, "update_task", task_id=task_id, status="IN_PROGRESS", assignee=who
        )
        assert updated == {"task": _task(api, task_id)}
        assert updated["task"]["status"] == "TASK_STATUS_IN_PROGRESS"
        listed = await _ok(session, "list_tasks", assignee=who, limit=5)
        assert listed == to_json(api.ListTasks(pb.ListTasksRequest(assignee=who, limit=5)))
        assert listed["total_count"] == 1


async def test_the_planning_tools_answer_as_the_grpc_api_does(shared_server, api, tmp_path):
    name = _prd(shared_server.root)
    async with mcp_session(shared_server.address, tmp_path / "mcp.log") as session:
        parsed = await _ok(session, "parse_prd", prd_file_path=name)
        again = to_json(api.ParsePRD(pb.ParsePRDRequest(prd_file_path=name)))
        assert {**parsed, "prd_id": None} == {**again, "prd_id": None}
        generated = await _ok(session, "generate_tasks", prd_id=parsed["prd_id"])
        assert generated["tasks_generated"] == 5
        assert generated["prd_id"] == parsed["prd_id"]
        assert generated["tasks"] == [_task(api, t["id"]) for t in generated["tasks"]]
        first = generated["tasks"][0]["id"]
        done = await _ok(session, "orchestrate_task", task_id=first)
        assert done["task"] == _task(api, first)
        assert done["result"]["routing_decision"] in ("enhance", "decompose")


async def test_next_task_is_the_oldest_todo_task_whose_dependencies_are_done(
    shared_server, api, tmp_path
):
    name = _prd(shared_server.root)
    prd_id = api.ParsePRD(pb.ParsePRDRequest(prd_file_path=name)).prd_id
    tasks = api.GenerateTasksFromPRD(pb.GenerateTasksFromPRDRequest(prd_id=prd_id)).tasks
    who = f"who-{uuid.uuid4().hex[:8]}"
    # The PRD's third task depends on its first; both get an assignee of their own.
    for task in (tasks[0], tasks[2]):
        api.UpdateTask(pb.UpdateTaskRequest(task_id=task.id, assignee=who))
    assert list(tasks[2].dependencies) == [tasks[0].id]
    async with mcp_session(shared_server.address, tmp_path / "mcp.log") as session:
        assert await _ok(session, "next_task", assignee=who) == {"task": _task(api, tasks[0].id)}
        api.UpdateTask(pb.UpdateTaskRequest(task_id=tasks[0].id, status=pb.TASK_STATUS_IN_PROGRESS))
        assert await _ok(session, "next_task", assignee=who) == {"task": None}
        api.UpdateTask(pb.UpdateTaskRequest(task_id=tasks[0].id, status=pb.TASK_STATUS_COMPLETED))
        assert await _ok(session, "next_task", assignee=who) == {"task": _task(api, tasks[2].id)}


async def test_tools_all_adds_delete_task_and_list_events(shared_server, api, tmp_path):
    task = api.AddTask(pb.AddTaskRequest(title="to delete")).task
    async with mcp_session(
        shared_server.address, tmp_path / "mcp.log", "--tools", "all"
    ) as session:
        names = [tool.name for tool in (await session.list_tools()).tools]
        assert names == [*DEFAULT_TOOLS, *OTHER_TOOLS]
        assert await _ok(session, "delete_task", task_id=task.id) == {"success": True}
        assert _task(api, task.id)["status"] == "TASK_STATUS_ARCHIVED"
        call = api.SubscribeToTaskEvents(pb.SubscribeToTaskEventsRequest(after_sequence=0))
        head = int(dict(call.initial_metadata())["rigger-head-sequence"])
        replayed = [next(call) for _ in range(head)]
        call.cancel()
        events = await _ok(session, "list_events", after_sequence=head - 3, limit=50)
        assert events == {
            "events": [to_json(e) for e in replayed[head - 3 :]],
            "head_sequence": head,
        }
        window = await _ok(session, "list_events", after_sequence=0, limit=2)
        assert [e["sequence"] for e in window["events"]] == [1, 2]
        assert await _ok(session, "list_events", after_sequence=head) == {
            "events": [],
            "head_sequence": head,
        }


async def test_a_comma_list_picks_the_tools(shared_server, tmp_path):
    log = tmp_path / "mcp.log"
    async with mcp_session(shared_server.address, log, "--tools", "get_task,list_events") as s:
        assert [tool.name for tool in (await s.list_tools()).tools] == ["get_task", "list_events"]


def test_an_unknown_tool_name_is_a_usage_error(shared_server):
    result = rig(shared_server, "mcp", "--tools", "get_task,rm_rf")
    assert result.returncode == exitcodes.USAGE.code
    assert "rm_rf" in result.stderr and "list_tasks" in result.stderr


async def test_refusals_are_tool_errors_naming_the_status(shared_server, tmp_path):
    async with mcp_session(shared_server.address, tmp_path / "mcp.log", "--tools", "all") as s:
        assert "NOT_FOUND" in await _error(s, "get_task", task_id="no-such-task")
        assert "INVALID_ARGUMENT" in await _error(s, "add_task", title=" ")
        assert "INVALID_ARGUMENT" in await _error(s, "add_task", title="x" * (129 * 1024))
        assert "INVALID_ARGUMENT" in await _error(s, "get_task", task_id="x" * (5 * 1024))
        oversize = await _error(s, "add_task", title="x" * (5 * 1024 * 1024))
        assert "RESOURCE_EXHAUSTED" in oversize or "INVALID_ARGUMENT" in oversize
        assert "PERMISSION_DENIED" in await _error(s, "parse_prd", prd_file_path="../../etc/passwd")
        assert "INVALID_ARGUMENT" in await _error(s, "add_task", title="x", due_date="soon")
        # Inputs outside the tools' types never reach the server.
        await _error(s, "update_task", task_id="x", status="DONE-ISH")
        await _error(s, "list_tasks", limit=10**9)
        await _error(s, "list_events", after_sequence=-1)
        await _error(s, "orchestrate_task", task_id="x", test_type="essay")
        await _error(s, "no_such_tool")
        # The MCP server goes on answering.
        assert "tasks" in await _ok(s, "list_tasks", limit=1)


async def test_an_unreachable_server_gives_tool_errors_until_it_is_up(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    root = tmp_path / "project"
    root.mkdir()
    log = tmp_path / "mcp.log"
    async with mcp_session(f"127.0.0.1:{port}", log) as session:
        assert "UNAVAILABLE" in await _error(session, "list_tasks")
        assert "UNAVAILABLE" in await _error(session, "next_task")
        server = ServerProcess(root)
        server.port = port
        server.start()
        try:
            # The channel retries the connection with a backoff of up to 5 s.
            refused: Any = None

            async def answered() -> CallToolResult | None:
                nonlocal refused
                result = await session.call_tool("list_tasks", {})
                if result.is_error:
                    refused = result.content
                    return None
                return result

            try:
                result = await wait_until_async(answered, "list_tasks to answer", within=60)
            except TimeoutError as exc:
                raise TimeoutError(f"{exc}; its last error: {refused}") from None
            assert result.structured_content == {"tasks": [], "total_count": 0}
        finally:
            server.stop()
    assert "Traceback" not in log.read_text()


def test_rig_mcp_without_a_client_ends_when_stdin_closes(shared_server):
    result = subprocess.run(
        [
            shutil.which("rig", path=str(pathlib.Path(sys.executable).parent)) or "rig",
            "mcp",
            "--addr",
            shared_server.address,
        ],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


def test_without_the_mcp_extra_rig_mcp_says_how_to_install_it(shared_server):
    # As if `pip install -e .` had left the SDK out: importing it fails.
    hide = "import sys; sys.modules['mcp'] = None; from rigger_server.cli import main; "
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            hide + f"sys.exit(main(['mcp', '--addr', {shared_server.address!r}]))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == exitcodes.USAGE.code
    assert "pip install 'rigger[mcp]'" in result.stderr
