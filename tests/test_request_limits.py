"""Every string and repeated field of every request message has a limit, and each is enforced.

Driven by the rigger.v1 descriptor: a field added to a request later without
an entry in request_limits.FIELD_LIMITS fails tests/unit/test_request_limits.py;
here every entry is exercised through the method that takes it, and a server
at its defaults takes what the docs promise (request_fields.PROMISED_*).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from request_fields import (
    FLAGS,
    PROMISED_FIELD_CHARS,
    PROMISED_TITLE_CHARS,
    limited_fields,
    message_with,
    over_the_limit,
)
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc
from streams import WAIT, read_to_error

from testkit.serverproc import ServerProcess

Call = Callable[[rigger_pb2_grpc.RiggerServiceStub, Message], Awaitable[grpc.aio.AioRpcError]]


def unary(method: str) -> Call:
    async def call(stub, request):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await getattr(stub, method)(request, timeout=WAIT)
        return refused.value

    return call


def server_stream(method: str) -> Call:
    async def call(stub, request):
        _, error = await read_to_error(getattr(stub, method)(request))
        return error

    return call


def bidi(wrap: Callable[[Message], list[pb.TaskEventStreamRequest]]) -> Call:
    async def call(stub, request):
        stream = stub.TaskEventStream()
        for message in wrap(request):
            await stream.write(message)
        _, error = await read_to_error(stream)
        return error

    return call


def subscribe_first(request: Message) -> list[pb.TaskEventStreamRequest]:
    return [pb.TaskEventStreamRequest(subscribe=request)]


def update_after_subscribing(request: Message) -> list[pb.TaskEventStreamRequest]:
    return [
        pb.TaskEventStreamRequest(subscribe=pb.SubscribeToTaskEventsRequest()),
        pb.TaskEventStreamRequest(update=request),
    ]


# How each request message reaches the server.
CALLS: dict[str, list[Call]] = {
    "ListTasksRequest": [unary("ListTasks")],
    "AddTaskRequest": [unary("AddTask")],
    "UpdateTaskRequest": [unary("UpdateTask")],
    "GetTaskRequest": [unary("GetTask")],
    "DeleteTaskRequest": [unary("DeleteTask")],
    "ParsePRDRequest": [unary("ParsePRD")],
    "SubscribeToTaskEventsRequest": [
        server_stream("SubscribeToTaskEvents"),
        bidi(subscribe_first),
    ],
    "GenerateTasksFromPRDRequest": [unary("GenerateTasksFromPRD")],
    "OrchestrateTaskRequest": [unary("OrchestrateTask")],
    "SubscribeToTaskEventBatchesRequest": [server_stream("SubscribeToTaskEventBatches")],
    "TaskUpdate": [bidi(update_after_subscribing)],
}


def test_every_request_message_is_exercised_through_the_server():
    for field in limited_fields():
        assert field.containing_type.name in CALLS, field.full_name


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    root = tmp_path_factory.mktemp("limits") / "project"
    root.mkdir()
    proc = ServerProcess(root, extra_args=FLAGS).start()
    yield proc
    proc.stop()


SERVED = [f for f in limited_fields() if f.containing_type.name in CALLS]


@pytest.mark.parametrize("field", SERVED, ids=lambda field: field.full_name)
async def test_the_server_refuses_a_field_over_its_limit_naming_it(limited, field):
    async with grpc.aio.insecure_channel(limited.address) as channel:
        stub = rigger_pb2_grpc.RiggerServiceStub(channel)
        for call in CALLS[field.containing_type.name]:
            request = message_with(field, over_the_limit(field))
            error = await asyncio.wait_for(call(stub, request), WAIT)
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
            assert field.name in error.details()


@pytest.fixture(scope="module")
def at_defaults(tmp_path_factory):
    root = tmp_path_factory.mktemp("defaults") / "project"
    root.mkdir()
    proc = ServerProcess(root).start()
    yield proc
    proc.stop()


async def test_a_server_at_its_defaults_takes_the_promised_title_in_add_and_update(at_defaults):
    longest = "é" * PROMISED_TITLE_CHARS
    async with grpc.aio.insecure_channel(at_defaults.address) as channel:
        stub = rigger_pb2_grpc.RiggerServiceStub(channel)
        added = await stub.AddTask(pb.AddTaskRequest(title=longest), timeout=WAIT)
        renamed = await stub.UpdateTask(
            pb.UpdateTaskRequest(task_id=added.task.id, title=longest[:-1] + "x"), timeout=WAIT
        )
        assert renamed.task.title.endswith("x") and len(renamed.task.title) == len(longest)
        for call, request in [
            (stub.AddTask, pb.AddTaskRequest(title=longest + "é")),
            (stub.UpdateTask, pb.UpdateTaskRequest(task_id=added.task.id, title=longest + "é")),
        ]:
            error = await unary_error(call, request)
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
            assert error.details() == (
                f"title: is {PROMISED_TITLE_CHARS + 1} characters long; "
                f"the limit is {PROMISED_TITLE_CHARS}"
            )


async def test_an_update_with_one_field_over_its_limit_applies_none_of_its_fields(at_defaults):
    async with grpc.aio.insecure_channel(at_defaults.address) as channel:
        stub = rigger_pb2_grpc.RiggerServiceStub(channel)
        task = (await stub.AddTask(pb.AddTaskRequest(title="t"), timeout=WAIT)).task
        too_long = "x" * (PROMISED_FIELD_CHARS + 1)
        request = pb.UpdateTaskRequest(task_id=task.id, title="renamed", assignee=too_long)
        error = await unary_error(stub.UpdateTask, request)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
        assert error.details().startswith("assignee: ")
        after = await stub.GetTask(pb.GetTaskRequest(task_id=task.id), timeout=WAIT)
    assert after.task == task


async def unary_error(call: Any, request: Message) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(request, timeout=WAIT)
    return refused.value
