"""rigger.v1 messages from YAML values, and plain values from messages.

Cases write requests as YAML mappings keyed by proto field names. Enum values
may be written in full (`TASK_STATUS_TODO`), without their prefix (`TODO`) or
as numbers, including numbers the enum does not define. 64-bit integers may be
written as numbers or strings. Setting an `optional` field to its default
(`assignee: ""`) makes it present, as on the wire.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message
from rigger.v1 import rigger_pb2

SERVICE = rigger_pb2.DESCRIPTOR.services_by_name["RiggerService"]


class MessageError(ValueError):
    """A YAML value does not fit the message it is meant to build or match."""


def message_class(descriptor: Descriptor) -> type[Message]:
    """The generated class for a message descriptor."""
    return message_factory.GetMessageClass(descriptor)


def enum_prefix(enum: EnumDescriptor) -> str:
    """The prefix every value name of a buf-style enum carries, e.g. `TASK_STATUS_`."""
    return (
        "".join(f"_{c}" if c.isupper() and i else c for i, c in enumerate(enum.name)).upper() + "_"
    )


def enum_number(enum: EnumDescriptor, value: object, where: str) -> int:
    """An enum number from a name (full or without prefix) or a number."""
    if isinstance(value, bool):
        raise MessageError(f"{where}: {value!r} is not a {enum.name}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        for name in (value, enum_prefix(enum) + value):
            if name in enum.values_by_name:
                return int(enum.values_by_name[name].number)
        if value.lstrip("-").isdigit():
            return int(value)
    known = ", ".join(enum.values_by_name)
    raise MessageError(f"{where}: {value!r} is not a {enum.name} (known: {known})")


def enum_name(enum: EnumDescriptor, number: int) -> str | int:
    """The value's name, or the bare number when the enum does not define it."""
    value = enum.values_by_number.get(number)
    return value.name if value is not None else number


def descriptor_of(message: Message) -> Descriptor:
    """The message's descriptor (the stubs type it as a union of two implementations)."""
    return cast(Descriptor, message.DESCRIPTOR)


def message_type(field: FieldDescriptor) -> Descriptor:
    """The descriptor of a message-typed field."""
    if field.message_type is None:
        raise MessageError(f"{field.full_name} is not a message field")
    return field.message_type


def enum_type(field: FieldDescriptor) -> EnumDescriptor:
    """The descriptor of an enum-typed field."""
    if field.enum_type is None:
        raise MessageError(f"{field.full_name} is not an enum field")
    return field.enum_type


def is_map(field: FieldDescriptor) -> bool:
    """True for `map<K, V>` fields (repeated entries of a synthetic MapEntry message)."""
    return (
        field.type == FieldDescriptor.TYPE_MESSAGE
        and field.is_repeated
        and bool(message_type(field).GetOptions().map_entry)
    )


def has_presence(field: FieldDescriptor) -> bool:
    """True when the field tracks presence (messages, `optional` and oneof members)."""
    return bool(field.has_presence)


def field_of(descriptor: Descriptor, name: str, where: str) -> FieldDescriptor:
    """The named field, or a MessageError listing the fields there are."""
    field = descriptor.fields_by_name.get(name)
    if field is None:
        known = ", ".join(descriptor.fields_by_name)
        raise MessageError(f"{where}: {descriptor.name} has no field {name!r} (fields: {known})")
    return field


_INTEGER_TYPES = {
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED32,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED32,
    FieldDescriptor.TYPE_SFIXED64,
}


def scalar(field: FieldDescriptor, value: object, where: str) -> object:
    """Coerce a YAML scalar to the Python value the field holds."""
    if field.type == FieldDescriptor.TYPE_ENUM:
        return enum_number(enum_type(field), value, where)
    if field.type in _INTEGER_TYPES:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise MessageError(f"{where}: {value!r} is not an integer")
        try:
            return int(value)
        except ValueError:
            raise MessageError(f"{where}: {value!r} is not an integer") from None
    if field.type == FieldDescriptor.TYPE_BOOL:
        if not isinstance(value, bool):
            raise MessageError(f"{where}: {value!r} is not a bool")
        return value
    if field.type == FieldDescriptor.TYPE_STRING:
        if not isinstance(value, str):
            raise MessageError(f"{where}: {value!r} is not a string (quote it in YAML)")
        return value
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise MessageError(f"{where}: {value!r} is not a number")
        return float(value)
    if field.type == FieldDescriptor.TYPE_BYTES:
        if not isinstance(value, str):
            raise MessageError(f"{where}: {value!r} is not a string of bytes")
        return value.encode("utf-8")
    raise MessageError(f"{where}: unsupported field type {field.type}")


def fill(message: Message, values: Mapping[str, Any], where: str = "") -> Message:
    """Set the message's fields from a mapping of proto field names to YAML values."""
    if not isinstance(values, Mapping):
        raise MessageError(f"{where or 'message'}: expected a mapping, got {values!r}")
    descriptor = descriptor_of(message)
    for name, value in values.items():
        here = f"{where}.{name}" if where else name
        field = field_of(descriptor, name, here)
        if value is None:
            continue  # null leaves the field unset, like omitting it
        if is_map(field):
            if not isinstance(value, Mapping):
                raise MessageError(f"{here}: expected a mapping")
            target = getattr(message, name)
            value_field = message_type(field).fields_by_name["value"]
            key_field = message_type(field).fields_by_name["key"]
            for key, item in value.items():
                k = scalar(key_field, key, f"{here}[{key!r}]")
                if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                    fill(target[k], item, f"{here}[{key!r}]")
                else:
                    target[k] = scalar(value_field, item, f"{here}[{key!r}]")
        elif field.is_repeated:
            if not isinstance(value, list):
                raise MessageError(f"{here}: expected a list")
            target = getattr(message, name)
            for index, item in enumerate(value):
                if field.type == FieldDescriptor.TYPE_MESSAGE:
                    fill(target.add(), item, f"{here}[{index}]")
                else:
                    target.append(scalar(field, item, f"{here}[{index}]"))
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            sub = getattr(message, name)
            sub.SetInParent()  # `subscribe: {}` must still select the oneof member
            fill(sub, value, here)
        else:
            setattr(message, name, scalar(field, value, here))
    return message


def build(descriptor: Descriptor, values: Mapping[str, Any] | None, where: str = "") -> Message:
    """A new message of the descriptor's type, filled from YAML values."""
    return fill(message_class(descriptor)(), values or {}, where)


def to_plain(message: Message) -> dict[str, Any]:
    """The message as plain data: present fields only, enums by name, 64-bit ints exact.

    Field presence survives: an `optional` field set to its default appears,
    an unset one does not; implicit-presence fields appear only when non-default.
    """
    plain: dict[str, Any] = {}
    for field, value in message.ListFields():
        plain[field.name] = _plain_value(field, value)
    return plain


def _plain_value(field: FieldDescriptor, value: Any) -> Any:
    if is_map(field):
        value_field = message_type(field).fields_by_name["value"]
        return {
            k: (to_plain(v) if value_field.type == FieldDescriptor.TYPE_MESSAGE else v)
            for k, v in sorted(value.items())
        }
    if field.is_repeated:
        return [_plain_scalar(field, v) for v in value]
    return _plain_scalar(field, value)


def _plain_scalar(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return to_plain(value)
    if field.type == FieldDescriptor.TYPE_ENUM:
        return enum_name(enum_type(field), value)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return value.hex()
    return value
