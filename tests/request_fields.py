"""The request fields with a length limit (request_limits.FIELD_LIMITS), and values at and over it.

Shared by the limit checks in process (tests/unit/test_request_limits.py) and
through the real server (tests/test_request_limits.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from rigger.v1 import rigger_pb2 as pb
from rigger_server.limits import Limits
from rigger_server.request_limits import FIELD_LIMITS, needs_limit

SERVICE = pb.DESCRIPTOR.services_by_name["RiggerService"]


LIMITS = Limits(max_title_chars=100, max_field_chars=20)


FLAGS = ("--max-title-length", "100", "--max-field-length", "20")

# Written out, not read from FIELD_LIMITS or Limits: what docs/operating.md's
# table of flags and constants and `rig grpc --help` promise a client may send
# to a server with default flags: task titles of 131072 characters
# (--max-title-length), every other string field 4096 (--max-field-length),
# 64 entries in a subscription's event_types (max_event_types, a documented
# constant without a flag).
PROMISED_TITLE_CHARS = 131_072
PROMISED_FIELD_CHARS = 4_096
PROMISED_EVENT_TYPES = 64
PROMISED_FLAG_DEFAULTS = {
    "--max-title-length": PROMISED_TITLE_CHARS,
    "--max-field-length": PROMISED_FIELD_CHARS,
}


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
