"""Request bytes that do not parse are INVALID_ARGUMENT, never UNKNOWN or INTERNAL."""

from __future__ import annotations

import grpc
import pytest
from rigger.v1 import rigger_pb2 as pb

CORRUPT = b"\xff\xff\xff"
BAD_UTF8_TITLE = b"\x0a\x02\xff\xfe"  # field 1 (title), two bytes that are not UTF-8

UNARY = ["ListTasks", "AddTask", "UpdateTask", "GetTask", "DeleteTask", "ParsePRD"]


@pytest.fixture
async def channel(shared_server):
    async with grpc.aio.insecure_channel(shared_server.address) as channel:
        yield channel


async def _task_count(channel) -> int:
    listed = await channel.unary_unary(
        "/rigger.v1.RiggerService/ListTasks",
        request_serializer=pb.ListTasksRequest.SerializeToString,
        response_deserializer=pb.ListTasksResponse.FromString,
    )(pb.ListTasksRequest())
    return listed.total_count


@pytest.mark.parametrize("method", UNARY)
async def test_corrupt_unary_request_is_invalid_argument(channel, method):
    call = channel.unary_unary(f"/rigger.v1.RiggerService/{method}")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(CORRUPT)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid rigger.v1." in raised.value.details()


async def test_invalid_utf8_title_is_invalid_argument_and_adds_nothing(channel):
    before = await _task_count(channel)
    call = channel.unary_unary("/rigger.v1.RiggerService/AddTask")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(BAD_UTF8_TITLE)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await _task_count(channel) == before


async def test_corrupt_subscription_request_is_invalid_argument(channel):
    call = channel.unary_stream("/rigger.v1.RiggerService/SubscribeToTaskEvents")(CORRUPT)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call.read()
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_corrupt_first_stream_message_is_invalid_argument(channel):
    call = channel.stream_stream("/rigger.v1.RiggerService/TaskEventStream")()
    await call.write(CORRUPT)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call.read()
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
