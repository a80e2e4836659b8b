"""Every string and repeated field of every request message has a limit, checked in process.

Driven by the rigger.v1 descriptor: a field added to a request later without
an entry in request_limits.FIELD_LIMITS fails the first test;
tests/test_request_limits.py exercises every entry through the real server."""

from __future__ import annotations

import re
from typing import Any

import pytest
from google.protobuf.descriptor import FieldDescriptor
from request_fields import (
    LIMITS,
    PROMISED_EVENT_TYPES,
    PROMISED_FIELD_CHARS,
    PROMISED_FLAG_DEFAULTS,
    PROMISED_TITLE_CHARS,
    at_the_limit,
    limited_fields,
    message_with,
    over_the_limit,
)
from rigger.v1 import rigger_pb2 as pb
from rigger_server.cli import main
from rigger_server.errors import InvalidArgument
from rigger_server.limits import Limits
from rigger_server.request_limits import FIELD_LIMITS, check_request


def test_every_string_and_repeated_field_of_every_request_has_a_limit():
    missing = [f.full_name for f in limited_fields() if f.full_name not in FIELD_LIMITS]
    assert not missing, f"add these to request_limits.FIELD_LIMITS: {missing}"


def test_every_limit_is_for_a_request_field_and_names_a_setting():
    known = {field.full_name for field in limited_fields()}
    assert set(FIELD_LIMITS) <= known, set(FIELD_LIMITS) - known
    for setting in FIELD_LIMITS.values():
        assert isinstance(getattr(Limits(), setting), int), setting


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


# --- what the docs promise (request_fields.PROMISED_*) ------------------------


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
