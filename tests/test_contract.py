"""rigger.proto keeps every name, number, type and label the wire contract states.

The contract (proto/rigger/v1/CONTRACT.md) is what sidecars of the first
release rely on; `nox -s breaking` compares the proto with the released image,
and these tests compare it with the page itself: its methods table, its
message and enum listings, and the additions table, read as they are written.
"""

from __future__ import annotations

import pathlib
import re

import pytest
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from rigger.v1 import rigger_pb2 as pb

CONTRACT = pathlib.Path(__file__).parents[1] / "proto" / "rigger" / "v1" / "CONTRACT.md"
TEXT = CONTRACT.read_text(encoding="utf-8")
SERVICE = pb.DESCRIPTOR.services_by_name["RiggerService"]

# One field as the contract writes it: number, name, then type and label, if given.
_FIELD = re.compile(r"(\d+) (\w+)(?: (map<\w+, \w+>|\w+))?(?: (optional|repeated))?")
_SCALARS = {
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_UINT32: "uint32",
    FieldDescriptor.TYPE_UINT64: "uint64",
}


def _section(title: str) -> str:
    start = TEXT.index(f"## {title}")
    end = TEXT.find("\n## ", start + 1)
    return " ".join(TEXT[start : end if end != -1 else None].split())


def _listings(section: str) -> dict[str, str]:
    """`**Name**: …` paragraphs of a section, name → the text after the colon."""
    parts = re.split(r"\*\*(\w+)\*\*:", _section(section))
    return dict(zip(parts[1::2], (p.strip() for p in parts[2::2]), strict=True))


def _contract_fields() -> list[tuple[str, str, str, str | None, str | None]]:
    """(message, number, name, type, label) for every field the contract lists."""
    found = []
    for message, text in _listings("Messages (number · name · type · label)").items():
        common = re.search(r"— all (\w+)", text)
        text = re.sub(r"\([^)]*\)", "", text)  # remarks: "(ISO 8601 date)"
        for number, name, kind, label in _FIELD.findall(text):
            found.append(
                (message, number, name, kind or (common and common.group(1)), label or None)
            )
    for row in re.findall(r"^\| (\w+) \| (\d+ \w+ [^|]*?) \|", TEXT, re.MULTILINE):
        number, name, kind, label = _FIELD.match(row[1]).groups()  # type: ignore[union-attr]
        found.append((row[0], number, name, kind, label))
    return found


def _type_name(field: FieldDescriptor) -> str:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key, value = field.message_type.fields
        return f"map<{_SCALARS[key.type]}, {_SCALARS[value.type]}>"
    if field.message_type is not None:
        return field.message_type.name
    if field.enum_type is not None:
        return field.enum_type.name
    return _SCALARS[field.type]


def test_the_contract_is_the_package_and_service_of_the_proto():
    assert pb.DESCRIPTOR.package == "rigger.v1"
    assert SERVICE.full_name == "rigger.v1.RiggerService"


METHODS = [
    row
    for row in re.findall(r"^\| (\w+) \| (\w+) \| (\w+) \| ([a-z ]+) \|$", TEXT, re.MULTILINE)
    if row[0] != "method"
]
SHAPES = {
    (False, False): "unary",
    (False, True): "server stream",
    (True, True): "bidirectional stream",
}


@pytest.mark.parametrize("row", METHODS, ids=lambda row: row[0])
def test_every_method_of_the_contract_keeps_its_messages_and_shape(row):
    name, request, response, shape = row
    method = SERVICE.methods_by_name[name]
    assert (method.input_type.name, method.output_type.name) == (request, response)
    assert SHAPES[(method.client_streaming, method.server_streaming)] == shape


def test_the_contract_lists_the_methods_of_the_first_release():
    assert len(METHODS) == 10


FIELDS = _contract_fields()


@pytest.mark.parametrize("field", FIELDS, ids=lambda f: f"{f[0]}.{f[2]}")
def test_every_field_of_the_contract_keeps_its_number_name_type_and_label(field):
    message, number, name, kind, label = field
    descriptor: Descriptor = pb.DESCRIPTOR.message_types_by_name[message]
    proto = descriptor.fields_by_number[int(number)]
    assert proto.name == name
    assert _type_name(proto) == kind
    assert proto.is_repeated == (label == "repeated" or kind.startswith("map<"))
    if proto.message_type is None and not proto.is_repeated:
        # A scalar's presence is part of its generated API: `optional` or not.
        assert proto.has_presence == (label == "optional"), f"{message}.{name}: {label}"


def test_the_contract_lists_every_message_of_the_first_release_with_its_fields():
    assert len({f[0] for f in FIELDS}) == 24
    assert len(FIELDS) == 86


def test_the_bidirectional_request_keeps_its_oneof():
    oneof = pb.TaskEventStreamRequest.DESCRIPTOR.oneofs_by_name["request"]
    assert [f.name for f in oneof.fields] == ["subscribe", "update"]


ENUMS = _listings("Enums")


@pytest.mark.parametrize("name", sorted(ENUMS))
def test_every_enum_value_of_the_contract_keeps_its_name_and_number(name):
    enum: EnumDescriptor = pb.DESCRIPTOR.enum_types_by_name[name]
    stated = {value: int(number) for value, number in re.findall(r"(\w+) (\d+)", ENUMS[name])}
    assert stated
    assert {value: enum.values_by_name[value].number for value in stated} == stated
