"""A stream's headers and its end always tell the client where to resume from."""

from __future__ import annotations

import grpc
import pytest
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc


async def _head(call) -> int:
    metadata = dict(await call.initial_metadata())
    return int(metadata["rigger-head-sequence"])


async def test_headers_name_the_newest_committed_event(stub):
    for n in range(3):
        await stub.AddTask(pb.AddTaskRequest(title=f"t{n}"))
    call = stub.SubscribeToTaskEvents(pb.SubscribeToTaskEventsRequest())
    assert await _head(call) == 3
    call.cancel()


async def test_an_empty_log_has_head_zero(stub):
    call = stub.SubscribeToTaskEvents(pb.SubscribeToTaskEventsRequest(after_sequence=0))
    assert await _head(call) == 0
    call.cancel()


async def test_a_live_subscriber_ended_before_any_event_resumes_from_the_head(server):
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = rigger_pb2_grpc.RiggerServiceStub(channel)
        for n in range(2):
            await stub.AddTask(pb.AddTaskRequest(title=f"t{n}"))
        call = stub.SubscribeToTaskEvents(pb.SubscribeToTaskEventsRequest())
        await call.initial_metadata()
        server.stop()
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await call.read()
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "last sequence received: 2" in ended.value.details()
    assert dict(ended.value.trailing_metadata())["rigger-last-sequence"] == "2"


async def test_a_replaying_subscriber_ended_early_resumes_from_what_it_received(server):
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = rigger_pb2_grpc.RiggerServiceStub(channel)
        for n in range(3):
            await stub.AddTask(pb.AddTaskRequest(title=f"t{n}"))
        call = stub.SubscribeToTaskEvents(pb.SubscribeToTaskEventsRequest(after_sequence=1))
        assert (await call.read()).sequence == 2
        assert (await call.read()).sequence == 3
        server.stop()
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await call.read()
    assert "last sequence received: 3" in ended.value.details()
