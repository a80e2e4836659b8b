"""`rig grpc --log-format json`: one JSON object per line for every log record.

Each call has a record with its method, code, duration, peer and, for
writes, the sequences it committed. The default text format is unchanged
and logs no call records.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from typing import Any

import grpc
import pytest
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc
from streams import WAIT, add, subscribe

from testkit.serverproc import ServerProcess
from testkit.wait import wait_until, wait_until_async

TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+(?: worker \d+)?")


def records(server: ServerProcess) -> list[dict[str, Any]]:
    """Every line the server wrote to stderr, each parsed as one JSON object."""
    parsed = []
    for line in server.read_log().splitlines():
        record = json.loads(line)  # fails the test on any line that is not JSON
        assert isinstance(record, dict), line
        parsed.append(record)
    return parsed


def calls_of(server: ServerProcess, method: str, within: float = WAIT) -> list[dict[str, Any]]:
    """The call records of `method`, once there is at least one."""
    return wait_until(
        lambda: [
            r for r in records(server) if r.get("method") == f"/rigger.v1.RiggerService/{method}"
        ],
        f"a call record of {method}",
        within=within,
        every=0.05,
    )


@pytest.fixture
def json_server(project):
    server = ServerProcess(project, extra_args=("--log-format", "json")).start()
    yield server
    server.stop()


async def test_every_stderr_line_is_one_json_object_with_level_logger_and_time(json_server):
    lines = records(json_server)
    assert lines, "the server logged nothing"
    for record in lines:
        assert {"level", "logger", "message", "timestamp"} <= record.keys()


async def test_a_write_is_logged_with_method_code_duration_peer_and_committed_sequences(
    json_server,
):
    async with grpc.aio.insecure_channel(json_server.address) as channel:
        stub = rigger_pb2_grpc.RiggerServiceStub(channel)
        await add(stub, "first")
        task = await add(stub, "second")
        await stub.UpdateTask(pb.UpdateTaskRequest(task_id=task.id, title="renamed"))
    added = calls_of(json_server, "AddTask")
    assert len(added) == 2
    first, second = added
    assert first["code"] == "OK"
    assert isinstance(first["duration_ms"], float) and first["duration_ms"] >= 0
    assert first["peer"].startswith(("ipv4:127.0.0.1:", "ipv6:"))
    assert first["committed"] == {"first": 1, "last": 1, "events": 1}
    assert second["committed"] == {"first": 2, "last": 2, "events": 1}
    (updated,) = calls_of(json_server, "UpdateTask")
    assert updated["committed"]["first"] == 3


async def test_a_failed_call_is_logged_with_its_code_and_no_commit(json_server):
    async with grpc.aio.insecure_channel(json_server.address) as channel:
        stub = rigger_pb2_grpc.RiggerServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.GetTask(pb.GetTaskRequest(task_id=str(uuid.uuid4())))
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.AddTask(pb.AddTaskRequest(title=""))
    (missing,) = calls_of(json_server, "GetTask")
    assert missing["code"] == "NOT_FOUND"
    assert "committed" not in missing
    (refused,) = calls_of(json_server, "AddTask")
    assert refused["code"] == "INVALID_ARGUMENT"
    assert "committed" not in refused


async def test_a_stream_is_logged_when_it_ends(json_server):
    async with grpc.aio.insecure_channel(json_server.address) as channel:
        stub = rigger_pb2_grpc.RiggerServiceStub(channel)
        call = subscribe(stub)
        await call.initial_metadata()
        call.cancel()
        await asyncio.sleep(0)
    (ended,) = calls_of(json_server, "SubscribeToTaskEvents")
    assert ended["code"] == "CANCELLED"


async def test_a_call_to_an_unknown_method_is_logged_without_echoing_a_huge_path(json_server):
    async with grpc.aio.insecure_channel(json_server.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError):
            await channel.unary_unary("/x.Y/" + "z" * 5000)(b"")
    unknown = await wait_until_async(
        lambda: [r for r in records(json_server) if r.get("method") == "unknown"],
        "a call record of the unknown method",
        within=WAIT,
        every=0.05,
    )
    assert unknown[0]["path"].startswith("/x.Y/zzz")
    assert len(unknown[0]["path"]) <= 200


async def test_workers_log_json_naming_their_worker(project):
    server = ServerProcess(project, extra_args=("--log-format", "json", "--workers", "2"))
    server.start()
    try:

        async def both_logged() -> bool:
            """True once both workers logged a call; else one more call, on a new connection."""
            if not {0, 1} - {record.get("worker") for record in records(server)}:
                return True
            async with grpc.aio.insecure_channel(server.address) as channel:
                await add(rigger_pb2_grpc.RiggerServiceStub(channel), "spread")
            return False

        await wait_until_async(both_logged, "the kernel to spread connections", within=60)
    finally:
        server.stop()


async def test_the_default_text_format_is_unchanged_and_logs_no_calls(server, stub):
    await add(stub, "a task")
    lines = server.read_log().splitlines()
    assert lines
    for line in lines:
        assert TEXT_LINE.match(line), line
        assert "AddTask" not in line
