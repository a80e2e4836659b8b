"""Every limit has a flag, a default, and a clear status when reached."""

from __future__ import annotations

import grpc
import pytest
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc
from rigger_server.limits import Limits
from serverproc import ServerProcess


@pytest.fixture
def limited(project):
    proc = ServerProcess(
        project,
        extra_args=(
            "--max-message-bytes",
            "65536",
            "--max-title-length",
            "100",
            "--max-field-length",
            "20",
            "--max-subscribers",
            "2",
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


def test_defaults_are_generous_but_bounded():
    limits = Limits()
    assert limits.max_message_bytes == 4 * 1024 * 1024
    assert limits.max_title_chars >= 100 * 1024  # a 100 kB title is legal
    assert limits.max_subscribers == 10_000
    assert limits.max_prd_bytes == 1024 * 1024


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


async def test_subscribers_beyond_the_limit_are_resource_exhausted(limited_stub):
    open_streams = [
        limited_stub.SubscribeToTaskEvents(pb.SubscribeToTaskEventsRequest()) for _ in range(2)
    ]
    for stream in open_streams:
        await stream.initial_metadata()  # registered
    extra = limited_stub.SubscribeToTaskEvents(pb.SubscribeToTaskEventsRequest())
    code, details = await _code(extra.read())
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "too many subscriber streams" in details and "2" in details


async def test_a_cancelled_subscriber_frees_its_slot(limited_stub):
    first = limited_stub.SubscribeToTaskEvents(pb.SubscribeToTaskEventsRequest())
    second = limited_stub.SubscribeToTaskEvents(pb.SubscribeToTaskEventsRequest())
    await first.initial_metadata()
    await second.initial_metadata()
    first.cancel()
    # The server notices the cancellation asynchronously; a bounded retry.
    for _ in range(100):
        third = limited_stub.SubscribeToTaskEvents(pb.SubscribeToTaskEventsRequest())
        try:
            await third.initial_metadata()
            await limited_stub.AddTask(pb.AddTaskRequest(title="after"))
            event = await third.read()
            assert event.task.title == "after"
            return
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    pytest.fail("the cancelled subscriber's slot was never freed")


async def test_a_prd_over_the_size_limit_is_invalid_argument(limited, limited_stub):
    (limited.root / "big.md").write_text("# Big\n" + "x" * 100)
    code, details = await _code(limited_stub.ParsePRD(pb.ParsePRDRequest(prd_file_path="big.md")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "64 bytes" in details
