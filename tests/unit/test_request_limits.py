"""Every string and repeated field of every request message has a limit, checked in process.

Driven by the rigger.v1 descriptor: a field added to a request later without
an entry in request_limits.FIELD_LIMITS fails the first test;
tests/test_request_limits.py exercises every entry through the real server."""

from __future__ import annotations

import pytest
from request_fields import LIMITS, at_the_limit, limited_fields, message_with, over_the_limit
from rigger.v1 import rigger_pb2 as pb
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
