"""Every limit has a flag, a default, and a clear status when reached.

What a client is told at the default limits, and at the subscriber limit, is
the conformance suite's (`add_task_over_4mib_is_resource_exhausted`,
`add_task_length_limits_count_characters`, `subscribe_limit_is_resource_exhausted`);
these show the flags move the limits.
"""

from __future__ import annotations

import grpc
import pytest
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc
from rigger_server.limits import MAX_EVENT_BYTES
from streams import replay_all

from testkit.serverproc import ServerProcess


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    """One server with every limit lowered, for the whole module."""
    root = tmp_path_factory.mktemp("limited") / "project"
    root.mkdir()
    proc = ServerProcess(
        root,
        extra_args=(
            "--max-message-bytes",
            "65536",
            "--max-title-length",
            "100",
            "--max-field-length",
            "20",
            "--max-prd-bytes",
            "64",
        ),
    ).start()
    yield proc
    proc.stop()


@pytest.fixture
async def limited_stub(limited):
    async with grpc.aio.insecure_channel(limited.address) as channel:
        yield rigger_pb2_grpc.RiggerServiceStub(channel)


async def _code(awaitable) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await awaitable
    return raised.value.code(), raised.value.details()


async def test_a_message_over_the_size_limit_is_resource_exhausted(limited_stub):
    code, _ = await _code(limited_stub.AddTask(pb.AddTaskRequest(title="x" * 70_000)))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_a_title_over_the_length_limit_is_invalid_argument(limited_stub):
    code, details = await _code(limited_stub.AddTask(pb.AddTaskRequest(title="x" * 101)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "title" in details and "100" in details


async def test_a_title_at_the_length_limit_is_accepted(limited_stub):
    reply = await limited_stub.AddTask(pb.AddTaskRequest(title="é" * 100))
    assert len(reply.task.title) == 100


async def test_an_assignee_over_the_field_limit_is_invalid_argument(limited_stub):
    code, details = await _code(
        limited_stub.AddTask(pb.AddTaskRequest(title="t", assignee="a" * 21))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "assignee" in details


async def test_a_prd_over_the_size_limit_is_invalid_argument(limited, limited_stub):
    (limited.root / "big.md").write_text("# Big\n" + "x" * 100)
    code, details = await _code(limited_stub.ParsePRD(pb.ParsePRDRequest(prd_file_path="big.md")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "64 bytes" in details


async def test_a_write_whose_event_no_client_could_receive_is_refused_and_the_log_flows_on(
    project,
):
    # Limits raised so far that a title alone makes a 4.2 MB event.
    flags = ("--max-title-length", str(3_000_000), "--max-message-bytes", str(16 * 1024 * 1024))
    proc = ServerProcess(project, extra_args=flags).start()
    try:
        async with grpc.aio.insecure_channel(proc.address) as channel:
            stub = rigger_pb2_grpc.RiggerServiceStub(channel)
            await stub.AddTask(pb.AddTaskRequest(title="before"))
            code, details = await _code(stub.AddTask(pb.AddTaskRequest(title="é" * 2_100_000)))
            assert code == grpc.StatusCode.FAILED_PRECONDITION
            assert f"at most {MAX_EVENT_BYTES} bytes" in details
            await stub.AddTask(pb.AddTaskRequest(title="after"))
            events = await replay_all(stub, 2)
    finally:
        proc.stop()
    assert [e.task.title for e in events] == ["before", "after"]
    assert [e.sequence for e in events] == [1, 2]
