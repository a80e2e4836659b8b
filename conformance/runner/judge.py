"""How observations are judged against expectations. Every comparison lives here.

Expected messages match partially: only the fields written are checked.
A field written as `null` (or `$absent`) must be absent, which for fields
without presence means it holds its default. `$present` requires presence
(a non-default value for fields without presence), `$any` accepts anything.
Maps match exactly unless written as `{$includes: {...}}`. Lists match item
by item; `{$len: n}` checks only the length and `{$unordered: [...]}` ignores
order. Strings also take `{$contains: text}`, `{$matches: regex}` and
`{$len: n}`.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from rigger.v1 import rigger_pb2 as pb

from conformance.cases import messages

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def show(value: Any, limit: int = 80) -> str:
    """A short printable form of a value; long strings are cut, with their length."""
    if isinstance(value, Message):
        value = messages.to_plain(value)
    text = repr(value)
    if len(text) > limit:
        return f"{text[:limit]}… ({len(text)} chars)"
    return text


# --- messages --------------------------------------------------------------------


def match_message(expected: Any, message: Message, path: str = "") -> list[str]:
    """Every way the message differs from the expected partial message; empty means a match."""
    if expected in ("$any", "$present"):
        return []
    if not isinstance(expected, Mapping):
        return [f"{path or 'message'}: the expectation {show(expected)} is not a mapping"]
    problems: list[str] = []
    for name, want in expected.items():
        here = f"{path}.{name}" if path else str(name)
        try:
            field = messages.field_of(messages.descriptor_of(message), str(name), here)
        except messages.MessageError as exc:
            problems.append(str(exc))
            continue
        problems.extend(_match_field(field, message, want, here))
    return problems


def _present(field: FieldDescriptor, message: Message) -> bool:
    if field.is_repeated:
        return len(getattr(message, field.name)) > 0
    if field.has_presence:
        return message.HasField(field.name)
    return bool(getattr(message, field.name) != field.default_value)


def _match_field(field: FieldDescriptor, message: Message, want: Any, path: str) -> list[str]:
    value = getattr(message, field.name)
    present = _present(field, message)
    if want == "$any":
        return []
    if want is None or want == "$absent":
        return [] if not present else [f"{path}: expected absent, got {show(_plain(field, value))}"]
    if want == "$present":
        return [] if present else [f"{path}: expected present, got absent"]
    if messages.is_map(field):
        return _match_map(field, dict(value), want, path)
    if field.is_repeated:
        return _match_list(field, list(value), want, path)
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        if not present:
            return [f"{path}: expected {show(want)}, got absent"]
        return match_message(want, value, path)
    if field.has_presence and not present:
        return [f"{path}: expected {show(want)}, got absent"]
    return match_scalar(field, value, want, path)


def _plain(field: FieldDescriptor, value: Any) -> Any:
    if isinstance(value, Message):
        return messages.to_plain(value)
    if messages.is_map(field):
        return dict(value)
    if field.is_repeated:
        return [messages.to_plain(v) if isinstance(v, Message) else v for v in value]
    if field.type == FieldDescriptor.TYPE_ENUM:
        return messages.enum_name(field.enum_type, value)
    return value


def match_scalar(field: FieldDescriptor, value: Any, want: Any, path: str) -> list[str]:
    """Compare one scalar (string, number, bool, enum) with its expectation."""
    if isinstance(want, Mapping):
        return _match_operator(value, want, path)
    try:
        expected = messages.scalar(field, want, path)
    except messages.MessageError as exc:
        return [str(exc)]
    if value == expected:
        return []
    if field.type == FieldDescriptor.TYPE_ENUM:
        enum = field.enum_type
        return [
            f"{path}: expected {messages.enum_name(enum, int(str(expected)))!s}, "
            f"got {messages.enum_name(enum, value)!s}"
        ]
    return [f"{path}: expected {show(expected)}, got {show(value)}"]


def _match_operator(value: Any, want: Mapping[str, Any], path: str) -> list[str]:
    if len(want) != 1:
        return [f"{path}: a matcher has exactly one $operator, got {sorted(want)}"]
    operator, argument = next(iter(want.items()))
    if operator == "$contains":
        ok = isinstance(value, str) and str(argument) in value
    elif operator == "$matches":
        ok = isinstance(value, str) and re.search(str(argument), value) is not None
    elif operator == "$len":
        ok = len(value) == argument
    elif operator == "$not":
        ok = value != argument
    else:
        return [f"{path}: unknown matcher {operator}"]
    return [] if ok else [f"{path}: expected {operator} {show(argument)}, got {show(value)}"]


def _match_list(field: FieldDescriptor, items: list[Any], want: Any, path: str) -> list[str]:
    if isinstance(want, Mapping) and set(want) == {"$len"}:
        if len(items) == want["$len"]:
            return []
        return [f"{path}: expected {want['$len']} items, got {len(items)}"]
    unordered = isinstance(want, Mapping) and set(want) == {"$unordered"}
    expected = want["$unordered"] if unordered else want
    if not isinstance(expected, list):
        return [f"{path}: expected a list (or $len / $unordered), got {show(want)}"]
    if len(items) != len(expected):
        shown = [show(_item_plain(field, i), 40) for i in items]
        return [f"{path}: expected {len(expected)} items, got {len(items)}: {shown}"]
    if unordered:
        return _match_unordered(field, items, expected, path)
    problems: list[str] = []
    for index, (item, item_want) in enumerate(zip(items, expected, strict=True)):
        problems.extend(_match_item(field, item, item_want, f"{path}[{index}]"))
    return problems


def _match_item(field: FieldDescriptor, item: Any, want: Any, path: str) -> list[str]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return match_message(want, item, path)
    return match_scalar(field, item, want, path)


def _item_plain(field: FieldDescriptor, item: Any) -> Any:
    if isinstance(item, Message):
        return messages.to_plain(item)
    if field.type == FieldDescriptor.TYPE_ENUM:
        return messages.enum_name(field.enum_type, item)
    return item


def _match_unordered(
    field: FieldDescriptor, items: list[Any], expected: list[Any], path: str
) -> list[str]:
    left = list(range(len(items)))
    for index, item_want in enumerate(expected):
        hit = next((i for i in left if not _match_item(field, items[i], item_want, path)), None)
        if hit is None:
            return [f"{path}: nothing left matches expected item {index}: {show(item_want)}"]
        left.remove(hit)
    return []


def _match_map(field: FieldDescriptor, actual: dict[Any, Any], want: Any, path: str) -> list[str]:
    partial = isinstance(want, Mapping) and set(want) == {"$includes"}
    expected = want["$includes"] if partial else want
    if not isinstance(expected, Mapping):
        return [f"{path}: expected a mapping, got {show(want)}"]
    value_field = field.message_type.fields_by_name["value"]
    problems: list[str] = []
    for key, item_want in expected.items():
        if key not in actual:
            problems.append(f"{path}[{key!r}]: expected {show(item_want)}, got no such key")
        elif item_want is not None:
            problems.extend(_match_item(value_field, actual[key], item_want, f"{path}[{key!r}]"))
    if not partial:
        extra = sorted(set(actual) - set(expected))
        if extra:
            problems.append(f"{path}: unexpected keys {extra} in {show(actual)}")
    return problems


# --- statuses and metadata ---------------------------------------------------------


def match_status(
    code_name: str,
    message_contains: Sequence[str],
    actual_code: int,
    actual_message: str,
    code_names: Mapping[int, str],
    path: str,
) -> list[str]:
    """Compare a gRPC status with the expected code name and message substrings."""
    problems: list[str] = []
    actual_name = code_names.get(actual_code, str(actual_code))
    if actual_name != code_name:
        problems.append(f"{path}: expected {code_name}, got {actual_name}: {show(actual_message)}")
        return problems
    for text in message_contains:
        if text not in actual_message:
            problems.append(f"{path}: status message {show(actual_message)} lacks {text!r}")
    return problems


def match_headers(expected: Mapping[str, str], actual: Mapping[str, str], path: str) -> list[str]:
    """Every expected metadata key must be there with the value given."""
    return [
        f"{path}[{key!r}]: expected {show(value)}, got {show(actual.get(key))}"
        for key, value in expected.items()
        if actual.get(key) != value
    ]


# --- event streams -----------------------------------------------------------------


def check_stream_order(
    events: Sequence[pb.TaskEvent], path: str, *, sequences: bool = True
) -> list[str]:
    """Commit order and exactly-once: sequences strictly increase and event ids never repeat.

    Without `sequences` (a schema without TaskEvent.sequence) only the ids are checked.
    """
    problems: list[str] = []
    ids = Counter(e.event_id for e in events)
    repeated = sorted(i for i, n in ids.items() if n > 1)
    if repeated:
        problems.append(f"{path}: events delivered more than once: {repeated[:5]}")
    for before, after in itertools.pairwise(events if sequences else ()):
        if after.sequence <= before.sequence:
            problems.append(
                f"{path}: sequence {after.sequence} arrived after {before.sequence} "
                "(not in commit order)"
            )
            break
    return problems


def check_gapless(events: Sequence[pb.TaskEvent], first: int | None, path: str) -> list[str]:
    """An unfiltered stream sees every event: sequences go up by exactly one.

    `first` is the sequence the stream must start at (after_sequence + 1), or
    None for a live-only stream, which may start anywhere.
    """
    if not events:
        return []
    if first is not None and events[0].sequence != first:
        return [f"{path}: the first event has sequence {events[0].sequence}, expected {first}"]
    for before, after in itertools.pairwise(events):
        if after.sequence != before.sequence + 1:
            missing = f"{before.sequence + 1}..{after.sequence - 1}"
            return [f"{path}: gap in an unfiltered stream: sequences {missing} never arrived"]
    return []


def check_event_fields(event: pb.TaskEvent, path: str, *, sequences: bool = True) -> list[str]:
    """What every TaskEvent carries, whatever the case: id, time, type, task, sequence.

    Without `sequences` (a schema without TaskEvent.sequence) the sequence is not asked for.
    """
    problems = []
    if not event.event_id:
        problems.append(f"{path}: event_id is empty")
    if not RFC3339.match(event.timestamp):
        problems.append(f"{path}: timestamp {event.timestamp!r} is not RFC 3339")
    if event.event_type == 0:
        problems.append(f"{path}: event_type is UNSPECIFIED")
    if not event.HasField("task") or not event.task.id:
        problems.append(f"{path}: the event carries no task")
    if sequences and event.sequence == 0:
        problems.append(f"{path}: sequence is 0")
    return problems


def field_path_value(message: Message, dotted: str) -> Any:
    """The value at a dotted field path, e.g. `task.title`."""
    value: Any = message
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def check_distinct(events: Sequence[Message], dotted: str, path: str) -> list[str]:
    """No two events share the value at the field path."""
    counts = Counter(str(field_path_value(e, dotted)) for e in events)
    repeated = sorted(v for v, n in counts.items() if n > 1)
    if repeated:
        return [f"{path}: {dotted} repeats: {[show(v, 40) for v in repeated[:5]]}"]
    return []


def check_ordered_within(
    events: Sequence[Message], dotted: str, pattern: str, path: str
) -> list[str]:
    """Within each group the pattern finds, the numeric index never goes down.

    This is how a case states "each writer's events arrive in the order that
    writer committed them" while different writers interleave freely. Events
    whose field the pattern does not match are left out; when it matches none,
    the assertion would check nothing, and that is a failure.
    """
    regex = re.compile(pattern)
    last: dict[str, int] = {}
    for event in events:
        value = str(field_path_value(event, dotted))
        found = regex.search(value)
        if found is None:
            continue
        group, index = found.group("group"), int(found.group("index"))
        if group in last and index < last[group]:
            return [f"{path}: {show(value)} arrived after index {last[group]} of {group!r}"]
        last[group] = index
    if events and not last:
        return [
            f"{path}: ordered_within checks nothing: {pattern!r} matches the {dotted} of "
            f"none of the {len(events)} events (e.g. {show(field_path_value(events[0], dotted))})"
        ]
    return []
