"""The case files' JSON Schema: the case language by hand, the messages generated from the proto.

`case.schema.json` (written by hand) is the case language: steps, security,
files. It refers to `messages.schema.json`, which is generated from the
RiggerService descriptor: every request, response and event as a case may
write it, method by method. Both are published beside the cases, and every
case file names the first on its first line, so editors that read
`# yaml-language-server: $schema=...` check cases as they are typed.

    python -m conformance.cases.schema    # regenerate messages.schema.json after a proto change

The runner validates with the same two files (and fails when the generated one
is stale), then turns the first error of each kind into a message naming the
file, the case and the path to the bad key.
"""

from __future__ import annotations

import json
import pathlib
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jsonschema
import referencing
from google.protobuf.descriptor import Descriptor, FieldDescriptor, ServiceDescriptor

from conformance.cases import messages

HERE = pathlib.Path(__file__).parent
CASE_SCHEMA = HERE / "case.schema.json"
MESSAGES_SCHEMA = HERE / "messages.schema.json"
DIALECT = "https://json-schema.org/draft/2020-12/schema"

# A `${name.path}` reference, resolved at run time, may stand for any value.
REFERENCE = {"type": "string", "pattern": r"\$\{[^}]+\}"}
_INTEGER_TEXT = r"^-?[0-9]+$"
_MATCH_WORDS = ["$any", "$present", "$absent"]

_INTEGERS = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


# --- generating messages.schema.json ---------------------------------------------


def _scalar(field: FieldDescriptor) -> dict[str, Any]:
    """What one value of a non-message field may be written as."""
    if field.enum_type is not None:
        enum = field.enum_type
        prefix = messages.enum_prefix(enum)
        names = [v.name for v in enum.values]
        short = [n.removeprefix(prefix) for n in names if n.startswith(prefix)]
        return {
            "description": f"a {enum.name}: a name with or without {prefix} "
            f"({', '.join(short)}), or a number (one the enum does not define too)",
            "anyOf": [
                {"enum": names + short},
                {"type": "integer"},
                {"type": "string", "pattern": _INTEGER_TEXT},
                REFERENCE,
            ],
        }
    if field.type in _INTEGERS:
        low, high = _INTEGERS[field.type]
        return {
            "description": f"an integer from {low} to {high}, as a number or a string",
            "anyOf": [
                {"type": "integer", "minimum": low, "maximum": high},
                {"type": "string", "pattern": _INTEGER_TEXT},
                REFERENCE,
            ],
        }
    if field.type == FieldDescriptor.TYPE_BOOL:
        return {"description": "true or false", "anyOf": [{"type": "boolean"}, REFERENCE]}
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return {"description": "a number", "anyOf": [{"type": "number"}, REFERENCE]}
    return {
        "description": 'a string (quote it in YAML), or {$repeat: ["text", count]}',
        "anyOf": [{"type": "string"}, {"$ref": "#/$defs/repeat"}],
    }


def _item(field: FieldDescriptor, match: bool) -> dict[str, Any]:
    if field.message_type is not None:
        # A list item may be a captured message too (`tasks: ["${t.task}"]`).
        shape = {"$ref": f"#/$defs/{_def_name(field.message_type, match)}"}
        description = f"a {field.message_type.name} (a mapping of its fields) or a reference"
        return _split("object", shape, [REFERENCE], description)
    plain = _scalar(field)
    if not match:
        return plain
    return {
        "description": plain["description"] + "; or a matcher ($contains, $matches, $len, $not)",
        "anyOf": [*plain["anyOf"], {"$ref": "#/$defs/scalar_matcher"}],
    }


def _field(field: FieldDescriptor, match: bool) -> dict[str, Any]:
    """What a field's value may be written as: in requests (match=False) or expectations.

    Mappings and lists are told apart from the other choices with if/then/else
    rather than anyOf, so that a mistake inside a nested message is reported
    there (`task.titel`) instead of as "none of the choices fit".
    """
    others: list[Any] = [{"type": "null"}]
    if match:
        others.append({"enum": _MATCH_WORDS})
    words = "; or null" + (", $absent, $present or $any" if match else "")
    if messages.is_map(field):
        value = _item(field.message_type.fields_by_name["value"], match)
        mapping: dict[str, Any] = {"type": "object", "additionalProperties": value}
        if match:
            mapping = {
                "if": {"required": ["$includes"]},
                "then": {
                    "properties": {"$includes": mapping},
                    "additionalProperties": False,
                },
                "else": mapping,
            }
        description = "a mapping (exactly these keys), {$includes: {...}} (at least these)"
        return _split("object", mapping, [*others, REFERENCE], description + words)
    if field.is_repeated:
        listed = {"type": "array", "items": _item(field, match)}
        if match:
            others.append({"$ref": "#/$defs/list_matcher"})
        description = "a list" + (", {$len: n} or {$unordered: [...]}" if match else "")
        return _split("array", listed, [*others, REFERENCE], description + words)
    if field.message_type is not None:
        description = f"a {field.message_type.name} (a mapping of its fields)"
        return _split("object", _item(field, match), [*others, REFERENCE], description + words)
    item = _item(field, match)
    return {"description": item["description"] + words, "anyOf": [*item["anyOf"], *others]}


def _split(kind: str, shape: dict[str, Any], others: list[Any], description: str) -> dict[str, Any]:
    return {
        "description": description,
        "if": {"type": kind},
        "then": shape,
        "else": {"description": description, "anyOf": others},
    }


def _def_name(descriptor: Descriptor, match: bool) -> str:
    return f"{descriptor.name}.match" if match else descriptor.name


def _message(descriptor: Descriptor, match: bool) -> dict[str, Any]:
    return {
        "title": descriptor.name,
        "type": "object",
        "properties": {f.name: _field(f, match) for f in descriptor.fields},
        "additionalProperties": False,
    }


def _reachable(roots: Iterable[Descriptor]) -> dict[str, Descriptor]:
    found: dict[str, Descriptor] = {}
    todo = list(roots)
    while todo:
        descriptor = todo.pop()
        if descriptor.full_name in found or descriptor.GetOptions().map_entry:
            continue
        found[descriptor.full_name] = descriptor
        todo += [f.message_type for f in descriptor.fields if f.message_type is not None]
    return found


def _by_method(methods: Sequence[Any], then: Any, description: str, kind: str) -> dict[str, Any]:
    return {
        "description": description,
        "allOf": [
            {"if": {"properties": {kind: {"const": m.name}}}, "then": then(m)} for m in methods
        ],
    }


def messages_schema(service: ServiceDescriptor = messages.SERVICE) -> dict[str, Any]:
    """messages.schema.json: every message a case writes, in request and expectation form."""
    unary = [m for m in service.methods if not m.client_streaming and not m.server_streaming]
    streaming = [m for m in service.methods if m.server_streaming]
    bidi = [m for m in streaming if m.client_streaming]
    # Batches are flattened into their events, so every stream's events are TaskEvents.
    event = service.methods_by_name["SubscribeToTaskEvents"].output_type
    requests = [m.input_type for m in service.methods]
    responses = [m.output_type for m in unary]
    send = [m.input_type for m in bidi]
    defs: dict[str, Any] = {}
    for descriptor in _reachable([*requests, *send]).values():
        defs[_def_name(descriptor, False)] = _message(descriptor, False)
    for descriptor in _reachable([*responses, event]).values():
        defs[_def_name(descriptor, True)] = _message(descriptor, True)
    defs.update(
        {
            "repeat": {
                "description": '{$repeat: ["text", count]}: the text repeated count times',
                "type": "object",
                "properties": {
                    "$repeat": {
                        "type": "array",
                        "prefixItems": [{"type": "string"}, {"type": "integer", "minimum": 0}],
                        "minItems": 2,
                        "maxItems": 2,
                    }
                },
                "required": ["$repeat"],
                "additionalProperties": False,
            },
            "scalar_matcher": {
                "type": "object",
                "minProperties": 1,
                "maxProperties": 1,
                "properties": {
                    "$contains": {"type": "string"},
                    "$matches": {"type": "string", "format": "regex"},
                    "$len": {"type": "integer", "minimum": 0},
                    "$not": {},
                },
                "additionalProperties": False,
            },
            "list_matcher": {
                "type": "object",
                "minProperties": 1,
                "maxProperties": 1,
                "properties": {
                    "$len": {"type": "integer", "minimum": 0},
                    "$unordered": {"type": "array"},
                },
                "additionalProperties": False,
            },
            "unary_method": {
                "description": f"a unary method of {service.name}",
                "enum": [m.name for m in unary],
            },
            "stream_method": {
                "description": f"a streaming method of {service.name}",
                "enum": [m.name for m in streaming],
            },
            "call_by_method": _by_method(
                unary,
                lambda m: {
                    "properties": {
                        "request": {"$ref": f"#/$defs/{_def_name(m.input_type, False)}"},
                        "expect": {
                            "properties": {
                                "response": {"$ref": f"#/$defs/{_def_name(m.output_type, True)}"}
                            }
                        },
                    }
                },
                "each method's request and response type",
                "call",
            ),
            "open_by_method": _by_method(
                streaming,
                lambda m: (
                    {
                        "properties": {
                            "request": {"$ref": f"#/$defs/{_def_name(m.input_type, False)}"}
                        }
                    }
                    if not m.client_streaming
                    else {}
                ),
                "each method's request type",
                "open",
            ),
            "send_message": {"$ref": f"#/$defs/{_def_name(send[0], False)}"},
            "event_match": {"$ref": f"#/$defs/{_def_name(event, True)}"},
        }
    )
    return {
        "$schema": DIALECT,
        "title": f"{service.full_name} messages as conformance cases write them",
        "description": "Generated from the service descriptor by "
        "`python -m conformance.cases.schema`; do not edit.",
        "$defs": dict(sorted(defs.items())),
    }


def render(document: Mapping[str, Any]) -> str:
    """The published text of a schema document."""
    return json.dumps(document, indent=1, ensure_ascii=False) + "\n"


def stale(service: ServiceDescriptor = messages.SERVICE) -> bool:
    """True when messages.schema.json differs from what the descriptor generates."""
    try:
        published = MESSAGES_SCHEMA.read_text(encoding="utf-8")
    except OSError:
        return True
    return published != render(messages_schema(service))


# --- validating ----------------------------------------------------------------------


def validator(service: ServiceDescriptor = messages.SERVICE) -> jsonschema.Draft202012Validator:
    """A validator for case files, with the messages schema generated from `service`."""
    case = json.loads(CASE_SCHEMA.read_text(encoding="utf-8"))
    registry: referencing.Registry[Any] = referencing.Registry().with_resource(
        MESSAGES_SCHEMA.name,
        referencing.Resource.from_contents(messages_schema(service)),
    )
    return jsonschema.Draft202012Validator(
        case, registry=registry, format_checker=jsonschema.FormatChecker()
    )


def _show(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + "…"


# Lists whose items the README and the runner count from 1 (`steps[1]`).
_COUNTED_FROM_ONE = {"steps", "branch", "events", "unordered"}


def path_text(path: Sequence[Any], document: Any) -> str:
    """`steps[2] (call).request.title` for a path into a case (or into any YAML value)."""
    text = ""
    value = document
    parent: Any = None
    for part in path:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            value = None
        if isinstance(part, int):
            if parent == "parallel":
                text = text.removesuffix(".parallel") + f".branch[{part + 1}]"
            else:
                text += f"[{part + 1 if parent in _COUNTED_FROM_ONE else part}]"
            if parent in ("steps", "parallel", "branch") and isinstance(value, Mapping):
                kinds = [k for k in STEP_KINDS if k in value]
                if len(kinds) == 1:
                    text += f" ({kinds[0]})"
            parent = "branch" if parent == "parallel" else None
        else:
            text += f".{part}" if text else str(part)
            parent = part
    return text


STEP_KINDS = (
    "call",
    "open",
    "send",
    "close_send",
    "cancel",
    "expect_events",
    "expect_end",
    "expect_quiet",
    "expect_same",
    "sleep",
    "server",
    "connect",
    "parallel",
    "repeat",
    "discover",
)


def explain(error: jsonschema.ValidationError) -> str:
    """One validation error in a case writer's words (without its location)."""
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    instance = error.instance
    if error.validator == "additionalProperties" and isinstance(instance, Mapping):
        known = list(schema.get("properties", {}))
        extra = sorted(str(k) for k in instance if k not in known)
        kinds = [k for k in STEP_KINDS if k in instance]
        if len(kinds) > 1:
            return f"a step has exactly one kind; this one has {' and '.join(kinds)}"
        if "title" in schema:
            unknown = ", ".join(map(repr, extra))
            return f"{schema['title']} has no field {unknown} (fields: {', '.join(known)})"
        return f"unknown keys {extra} (known: {', '.join(known)})"
    if error.validator == "uniqueItems":
        return f"lists an item twice: {_show(instance)}"
    if error.validator == "required":
        return _required(error)
    if "description" in schema and error.validator in ("anyOf", "oneOf", "enum", "not", "pattern"):
        return f"got {_show(instance)}; expected {schema['description']}"
    return error.message


def _required(error: jsonschema.ValidationError) -> str:
    missing = [k for k in error.validator_value if k not in error.instance]
    return f"`{missing[0]}` is required" if missing else error.message


def main(argv: Sequence[str] | None = None) -> int:
    """Regenerate messages.schema.json from the service descriptor."""
    del argv
    MESSAGES_SCHEMA.write_text(render(messages_schema()), encoding="utf-8")
    print(f"wrote {MESSAGES_SCHEMA}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
