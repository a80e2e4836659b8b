"""Every string and repeated field of every request message has a limit, and each is enforced.

Driven by the rigger.v1 descriptor: a field added to a request later without
an entry in request_limits.FIELD_LIMITS fails the first test, and every
entry is exercised through the method that takes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc
from rigger_server.errors import InvalidArgument
from rigger_server.limits import Limits
from rigger_server.request_limits import FIELD_LIMITS, check_request, needs_limit
from streams import WAIT, read_to_error

from testkit.serverproc import ServerProcess

SERVICE = pb.DESCRIPTOR.services_by_name["RiggerService"]
LIMITS = Limits(max_title_chars=100, max_field_chars=20)
FLAGS = ("--max-title-length", "100", "--max-field-length", "20")


def request_fields(message: Descriptor, seen: set[str] | None = None) -> Iterator[FieldDescriptor]:
    """Every field of a request message and of the messages inside it."""
    seen = set() if seen is None else seen
    if message.full_name in seen:
        return
    seen.add(message.full_name)
    for field in message.fields:
        yield field
        if field.message_type is not None and not field.message_type.GetOptions().map_entry:
            yield from request_fields(field.message_type, seen)


def limited_fields() -> list[FieldDescriptor]:
    found: dict[str, FieldDescriptor] = {}
    for method in SERVICE.methods:
        for field in request_fields(method.input_type):
            if needs_limit(field):
                found[field.full_name] = field
    return sorted(found.values(), key=lambda field: field.full_name)


def test_every_string_and_repeated_field_of_every_request_has_a_limit():
    missing = [f.full_name for f in limited_fields() if f.full_name not in FIELD_LIMITS]
    assert not missing, f"add these to request_limits.FIELD_LIMITS: {missing}"


def test_every_limit_is_for_a_request_field_and_names_a_setting():
    known = {field.full_name for field in limited_fields()}
    assert set(FIELD_LIMITS) <= known, set(FIELD_LIMITS) - known
    for setting in FIELD_LIMITS.values():
        assert isinstance(getattr(Limits(), setting), int), setting


def over_the_limit(field: FieldDescriptor) -> Any:
    limit = getattr(LIMITS, FIELD_LIMITS[field.full_name])
    if field.is_repeated:
        return [1] * (limit + 1)
    return "x" * (limit + 1)


def at_the_limit(field: FieldDescriptor) -> Any:
    limit = getattr(LIMITS, FIELD_LIMITS[field.full_name])
    if field.is_repeated:
        return [1] * limit
    return "x" * limit


def message_with(field: FieldDescriptor, value: Any) -> Message:
    message = pb.__dict__[field.containing_type.name]()
    if field.is_repeated:
        getattr(message, field.name).extend(value)
    else:
        setattr(message, field.name, value)
    return message


@pytest.mark.parametrize("field", limited_fields(), ids=lambda field: field.full_name)
def test_a_field_over_its_limit_is_refused_naming_it(field):
    with pytest.raises(InvalidArgument) as refused:
        check_request(message_with(field, over_the_limit(field)), LIMITS)
    assert refused.value.field == field.name
    check_request(message_with(field, at_the_limit(field)), LIMITS)


def test_a_nested_field_is_named_by_its_path():
    request = pb.TaskEventStreamRequest(update=pb.TaskUpdate(task_id="t", assignee="x" * 21))
    with pytest.raises(InvalidArgument) as refused:
        check_request(request, LIMITS)
    assert refused.value.field == "update.assignee"


# --- through the real server ------------------------------------------------

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


# How each request message reaches the server. Messages of methods not
# implemented yet are checked above, without a server.
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
    "SubscribeToTaskEventBatchesRequest": [server_stream("SubscribeToTaskEventBatches")],
    "TaskUpdate": [bidi(update_after_subscribing)],
}
NOT_IMPLEMENTED = {"GenerateTasksFromPRDRequest", "OrchestrateTaskRequest"}


def test_every_request_message_is_exercised_through_the_server_or_not_implemented():
    for field in limited_fields():
        assert field.containing_type.name in CALLS.keys() | NOT_IMPLEMENTED, field.full_name


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
