"""A run's transcript: what every client saw, normalised so languages can be compared.

Normalising removes what legitimately differs between runs and nothing else:
ids (replaced by aliases in order of first appearance, so "the same task"
stays recognisable), timestamps (replaced by a marker when well-formed),
receive times, the per-run project directory, client-generated status
messages (cancellation, deadlines), and transport headers. Records made by
concurrent steps or order-free expectations are compared as sorted sets and
without sequences and versions, which depend on the interleaving. It keeps
field presence, enum numbers, 64-bit values and maps as the executor
re-encoded them.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from typing import Any

from google.protobuf.message import Message

from conformance.cases import messages
from conformance.runner.judge import RFC3339

UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
TIME_FIELDS = frozenset({"created_at", "updated_at", "timestamp"})
# Statuses a client library makes up itself: their messages differ by language
# and say nothing about the server.
CLIENT_CODES = frozenset({"CANCELLED", "DEADLINE_EXCEEDED"})
# Only the application's own metadata is compared; transport headers differ.
APP_HEADER_PREFIX = "rigger-"


@dataclasses.dataclass
class Record:
    """One thing a client saw: a unary outcome, stream headers, expected events, a stream end."""

    at: str
    client: str
    kind: str
    code: str = ""
    message: str = ""
    response: Message | None = None
    events: Sequence[Message] = ()
    trailers: dict[str, str] = dataclasses.field(default_factory=dict)  # or the headers
    # The status message came from the client's own TLS stack (a refused
    # handshake): it differs by language and is left out, the code is kept.
    transport: bool = False
    # Order-free records come from concurrent steps or order-free
    # expectations; they are compared as sorted sets.
    unordered: bool = False


class Transcript:
    """The records of one run, in the order they were made."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    def add(self, record: Record) -> None:
        """Append a record."""
        self.records.append(record)


class _Aliases:
    def __init__(self, replacements: dict[str, str]) -> None:
        self.replacements = replacements
        self.ids: dict[str, str] = {}

    def register(self, text: str) -> None:
        for found in UUID.findall(text):
            self.ids.setdefault(found, f"<id{len(self.ids) + 1}>")

    def apply(self, text: str) -> str:
        for raw, marker in self.replacements.items():
            text = text.replace(raw, marker)
        return UUID.sub(lambda m: self.ids.get(m.group(0), "<id>"), text)


def _walk_strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _walk_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _walk_strings(v)]
    return []


# Values that only say where in an interleaving of concurrent writes a change
# landed; order-free records leave them out.
RACY_FIELDS = frozenset({"sequence", "version"})


def _plain_event(event: Message) -> dict[str, Any]:
    plain = messages.to_plain(event)
    plain.pop("event_id", None)  # unique by construction; presence is judged elsewhere
    return plain


def _without_racy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_racy(v) for k, v in value.items() if k not in RACY_FIELDS}
    if isinstance(value, list):
        return [_without_racy(v) for v in value]
    return value


def _raw(record: Record) -> dict[str, Any]:
    data: dict[str, Any] = {"at": record.at, "client": record.client, "kind": record.kind}
    if record.kind in ("unary", "end"):
        data["code"] = record.code
        if record.code not in CLIENT_CODES and not record.transport:
            data["message"] = record.message
    # Stream headers ride in `trailers` too; only the application's own keys count.
    metadata = {k: v for k, v in record.trailers.items() if k.startswith(APP_HEADER_PREFIX)}
    if metadata:
        data["metadata"] = metadata
    if record.response is not None:
        data["response"] = messages.to_plain(record.response)
    if record.kind == "events":
        data["events"] = [_plain_event(e) for e in record.events]
    if record.unordered:
        data = _without_racy(data)
    return data


def _scrub(value: Any, aliases: _Aliases, key: str = "") -> Any:
    if isinstance(value, str):
        if key in TIME_FIELDS:
            return "<time>" if RFC3339.match(value) else f"<malformed time {value!r}>"
        return aliases.apply(value)
    if isinstance(value, dict):
        return {k: _scrub(v, aliases, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, aliases, key) for v in value]
    return value


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


# Sequence-valued keys: message fields, and metadata such as rigger-head-sequence.
SEQUENCE_KEYS = frozenset({"sequence", "after_sequence"})
SEQUENCE_METADATA_SUFFIX = "-sequence"


def _is_sequence_key(key: str) -> bool:
    return key in SEQUENCE_KEYS or key.endswith(SEQUENCE_METADATA_SUFFIX)


# Sequences this far past the base are "beyond any log" literals (2^64-1), kept as they are.
BEYOND = 2**63


def _shift_sequences(value: Any, base: int, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _shift_sequences(v, base, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_shift_sequences(v, base, key) for v in value]
    if _is_sequence_key(key) and str(value).isdigit() and base <= int(value) < base + BEYOND:
        shifted = int(value) - base
        return shifted if isinstance(value, int) else str(shifted)
    return value


def _shift_message(message: str, base: int, top: int) -> str:
    """A status message's numbers between `base` and `top` (sequences) counted from `base`."""
    return NUMBER.sub(
        lambda m: str(int(m.group(0)) - base) if base <= int(m.group(0)) <= top else m.group(0),
        message,
    )


NUMBER = re.compile(r"\b\d+\b")


def normalise(
    transcript: Transcript, replacements: dict[str, str], *, sequences: tuple[int, int] = (0, 0)
) -> list[dict[str, Any]]:
    """The comparable form of a transcript.

    `replacements` maps run-specific text (the project directory) to markers.
    Ids get aliases from ordered records only, so concurrency cannot shuffle
    the numbering; order-free records are sorted after scrubbing. With
    `sequences` (base, top) from a shared server (its head when the run began,
    and the largest sequence the run could meet) sequences count from the
    base, as they count from 0 on a fresh server: in sequence fields and
    headers, and the numbers from base to top in status messages.
    """
    aliases = _Aliases(replacements)
    raw = [(_raw(r), r.unordered) for r in transcript.records]
    base, top = sequences
    if base:
        raw = [(_shift_sequences(data, base), unordered) for data, unordered in raw]
        for data, _ in raw:
            if "message" in data:
                data["message"] = _shift_message(data["message"], base, top)
    for data, unordered in raw:
        if not unordered:
            for text in _walk_strings(data):
                aliases.register(text)
    out: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    for data, unordered in raw:
        scrubbed = _scrub(data, aliases)
        if unordered:
            if scrubbed.get("events"):
                scrubbed["events"] = sorted(scrubbed["events"], key=_canonical)
            pending.append(scrubbed)
            continue
        out += sorted(pending, key=_canonical)
        pending = []
        out.append(scrubbed)
    out += sorted(pending, key=_canonical)
    return out


def render(normalised: list[dict[str, Any]]) -> list[str]:
    """Lines of a normalised transcript, for diffs."""
    return [_canonical(entry) for entry in normalised]
