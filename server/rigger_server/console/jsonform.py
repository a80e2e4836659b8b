"""The JSON form of a rigger.v1 message, as `--json` prints it and `rig mcp` returns it.

It is protobuf's JSON mapping with the contract's own field names
(`due_date`, not `dueDate`) and enum value names (`TASK_STATUS_TODO`), with
three changes that make it easier to script against: every field is present,
an optional field that is not set is `null`, and 64-bit integers (`version`,
`sequence`) are numbers rather than strings, so `jq '.sequence > 10'` works.
"""

from __future__ import annotations

from typing import Any, cast

from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message


def to_json(message: Message) -> dict[str, Any]:
    """Every field of `message` under its contract name, recursively."""
    out: dict[str, Any] = {}
    # The stubs type descriptors as either of protobuf's two implementations.
    for field in cast(list[FieldDescriptor], message.DESCRIPTOR.fields):
        value = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            out[field.name] = {key: _value(value_field, item) for key, item in value.items()}
        elif field.is_repeated:
            out[field.name] = [_value(field, item) for item in value]
        elif field.has_presence and not message.HasField(field.name):
            out[field.name] = None
        else:
            out[field.name] = _value(field, value)
    return out


def _value(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return to_json(value)
    if field.type == FieldDescriptor.TYPE_ENUM:
        known = cast(EnumDescriptor, field.enum_type).values_by_number.get(value)
        # A number this build has no name for: a newer server may send it.
        return value if known is None else known.name
    return value
