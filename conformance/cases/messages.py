"""rigger.v1 messages from YAML values, and plain values from messages.

Case values are protobuf's JSON mapping (`google.protobuf.json_format`) keyed
by proto field names: enums by name or number (also one the enum does not
define), 64-bit integers as numbers or strings, and an `optional` field set to
its default (`assignee: ""`) is present, as on the wire. The one addition is
that enum names may drop their prefix (`TODO` for `TASK_STATUS_TODO`); a small
pre-pass spells them out before json_format parses the rest.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, cast

from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message
from rigger.v1 import rigger_pb2

SERVICE = rigger_pb2.DESCRIPTOR.services_by_name["RiggerService"]


class MessageError(ValueError):
    """A YAML value does not fit the message it is meant to build or match."""


def message_class(descriptor: Descriptor) -> type[Message]:
    """The generated class for a message descriptor."""
    return message_factory.GetMessageClass(descriptor)


def descriptor_of(message: Message) -> Descriptor:
    """The message's descriptor (the stubs type it as a union of two implementations)."""
    return cast(Descriptor, message.DESCRIPTOR)


def enum_prefix(enum: EnumDescriptor) -> str:
    """The prefix every value name of a buf-style enum carries, e.g. `TASK_STATUS_`."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper() + "_"


def enum_name(enum: EnumDescriptor, number: int) -> str | int:
    """The value's name, or the bare number when the enum does not define it."""
    value = enum.values_by_number.get(number)
    return value.name if value is not None else number


def is_map(field: FieldDescriptor) -> bool:
    """True for `map<K, V>` fields (repeated entries of a synthetic MapEntry message)."""
    return bool(
        field.message_type is not None
        and field.is_repeated
        and field.message_type.GetOptions().map_entry
    )


def field_of(descriptor: Descriptor, name: str, where: str) -> FieldDescriptor:
    """The named field, or a MessageError listing the fields there are."""
    field = descriptor.fields_by_name.get(name)
    if field is None:
        known = ", ".join(descriptor.fields_by_name)
        raise MessageError(f"{where}: {descriptor.name} has no field {name!r} (fields: {known})")
    return field


def _enum_value(enum: EnumDescriptor, value: Any, where: str) -> Any:
    # json_format reads `true` as 1: a bool is never what a case writer meant.
    if isinstance(value, bool):
        raise MessageError(f"{where}: {value!r} is not a {enum.name}")
    if isinstance(value, str) and value not in enum.values_by_name:
        full = enum_prefix(enum) + value
        if full in enum.values_by_name:
            return full
    return value


def _spell_out(descriptor: Descriptor, values: Any, where: str) -> Any:
    """The values with every prefix-less enum name written in full, as json_format wants."""
    if not isinstance(values, Mapping):
        raise MessageError(f"{where or 'message'}: expected a mapping, got {values!r}")
    out: dict[str, Any] = {}
    for name, value in values.items():
        here = f"{where}.{name}" if where else str(name)
        field = field_of(descriptor, str(name), here)
        out[name] = value
        if value is None:
            continue  # null leaves the field unset, like omitting it
        if is_map(field):
            item_field = field.message_type.fields_by_name["value"]
            if isinstance(value, Mapping):
                out[name] = {k: _item(item_field, v, f"{here}[{k!r}]") for k, v in value.items()}
        elif field.is_repeated and isinstance(value, list):
            out[name] = [_item(field, v, f"{here}[{i}]") for i, v in enumerate(value)]
        else:
            out[name] = _item(field, value, here)
    return out


def _item(field: FieldDescriptor, value: Any, where: str) -> Any:
    if field.enum_type is not None:
        return _enum_value(field.enum_type, value, where)
    if field.message_type is not None and value is not None:
        return _spell_out(field.message_type, value, where)
    return value


def fill(message: Message, values: Mapping[str, Any], where: str = "") -> Message:
    """Merge a mapping of proto field names to YAML values into the message."""
    descriptor = descriptor_of(message)
    try:
        json_format.ParseDict(_spell_out(descriptor, values, where), message)
    except json_format.ParseError as exc:
        raise MessageError(f"{where or descriptor.name}: {exc}") from None
    return message


def build(descriptor: Descriptor, values: Mapping[str, Any] | None, where: str = "") -> Message:
    """A new message of the descriptor's type, filled from YAML values."""
    return fill(message_class(descriptor)(), values or {}, where)


def scalar(field: FieldDescriptor, value: object, where: str) -> object:
    """One YAML value converted exactly as `build` would convert it for this field.

    Used to compare expectations with received values: `TODO`, `1` and
    `"TASK_STATUS_TODO"` are the same status; `"5"` and `5` the same uint64.
    """
    holder = message_class(field.containing_type)()
    item = [value] if field.is_repeated else value
    fill(holder, {field.name: item}, where)
    got = getattr(holder, field.name)
    return got[0] if field.is_repeated else got


def to_plain(message: Message) -> dict[str, Any]:
    """The message as plain data (protobuf's JSON mapping, proto field names).

    Field presence survives: an `optional` field set to its default appears,
    an unset one does not; implicit-presence fields appear only when non-default.
    Enums are names (numbers the enum does not define stay numbers), 64-bit
    integers are exact decimal strings.
    """
    return json_format.MessageToDict(message, preserving_proto_field_name=True)
