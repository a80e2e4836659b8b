"""Every string and repeated field of every request message has a limit, and each is enforced.

Driven by the rigger.v1 descriptor: a field added to a request later without
an entry in request_limits.FIELD_LIMITS fails the first test, and every
entry is exercised through the method that takes it. What each limit is at
the server's defaults is pinned to what the docs promise, written out below,
never read back from the table or from `Limits`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc
from rigger_server.cli import main
from rigger_server.errors import InvalidArgument
from rigger_server.limits import Limits
from rigger_server.request_limits import FIELD_LIMITS, check_request, needs_limit
from serverproc import ServerProcess
from streams import WAIT, read_to_error

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


def test_lengths_are_counted_in_characters_not_bytes():
    limits = Limits(max_title_chars=3, max_field_chars=2)
    check_request(pb.AddTaskRequest(title="ééé", assignee="üü"), limits)
    for request, message in [
        (pb.AddTaskRequest(title="éééé"), "title: is 4 characters long; the limit is 3"),
        (
            pb.AddTaskRequest(title="t", assignee="üüü"),
            "assignee: is 3 characters long; the limit is 2",
        ),
    ]:
        with pytest.raises(InvalidArgument) as refused:
            check_request(request, limits)
        assert str(refused.value) == message


def test_a_repeated_field_over_its_limit_is_counted_in_entries():
    request = pb.SubscribeToTaskEventsRequest(event_types=[1] * 65)
    with pytest.raises(InvalidArgument) as refused:
        check_request(request, Limits())
    assert str(refused.value) == "event_types: has 65 entries; the limit is 64"


# --- what the docs promise --------------------------------------------------

# Written out, not read from FIELD_LIMITS or Limits: what SECURITY.md's table
# of limits, the README and `rig grpc --help` promise a client may send to a
# server with default flags. "Task title length": 131072 characters
# (--max-title-length); "every other string field of every request":
# 4096 characters (--max-field-length); "entries in a subscription's
# event_types": 64 (a documented constant, no flag).
PROMISED_TITLE_CHARS = 131_072
PROMISED_FIELD_CHARS = 4_096
PROMISED_EVENT_TYPES = 64
PROMISED_FLAG_DEFAULTS = {
    "--max-title-length": PROMISED_TITLE_CHARS,
    "--max-field-length": PROMISED_FIELD_CHARS,
}


def promised(field: FieldDescriptor) -> int:
    """What the docs promise for this field, by the rule they state it in."""
    if field.is_repeated:
        assert field.name == "event_types", f"the docs promise nothing for {field.full_name}"
        return PROMISED_EVENT_TYPES
    return PROMISED_TITLE_CHARS if field.name == "title" else PROMISED_FIELD_CHARS


def value_of_length(field: FieldDescriptor, length: int) -> Any:
    return [1] * length if field.is_repeated else "é" * length


@pytest.mark.parametrize("field", limited_fields(), ids=lambda field: field.full_name)
def test_at_the_default_limits_each_field_takes_what_the_docs_promise_and_no_more(field):
    check_request(message_with(field, value_of_length(field, promised(field))), Limits())
    with pytest.raises(InvalidArgument) as refused:
        check_request(message_with(field, value_of_length(field, promised(field) + 1)), Limits())
    assert refused.value.field == field.name
    assert str(refused.value).endswith(f"; the limit is {promised(field)}")


def test_rig_grpc_help_promises_the_documented_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["grpc", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag, number in PROMISED_FLAG_DEFAULTS.items():
        said = re.search(rf"{flag} N .*?\(default: (\d+)\)", text)
        assert said is not None, flag
        assert int(said.group(1)) == number, flag


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
