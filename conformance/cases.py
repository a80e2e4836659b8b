"""Conformance cases: the YAML schema, its loader and its static checks.

Every file in conformance/cases/ holds `cases:`, a list of cases. A case names
its clients (roles), optionally files for the server's project directory and
extra server flags, and a script of steps. conformance/README.md documents the
schema with examples; this module is its single source of truth.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import grpc
import yaml
from google.protobuf.descriptor import Descriptor, ServiceDescriptor

from conformance import messages

CASES_DIR = pathlib.Path(__file__).parent / "cases"
DEFAULT_ROLE = "client"
NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")
CODES = {code.name: code.value[0] for code in grpc.StatusCode}

# Defaults for timing. Waits end as soon as what is awaited arrives, so a
# generous limit costs nothing on a passing run and keeps a loaded 2-core
# machine from failing runs that are merely slow. Quiet windows always cost
# their full length, so they stay short.
DEFAULT_QUIET_MS = 250
DEFAULT_WITHIN_MS = 10000


class CaseError(ValueError):
    """A case file does not follow the schema."""


# --- the schema ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FileSpec:
    """A file to create under the server's project directory before it starts."""

    path: str
    text: str | None = None
    hex: str | None = None
    symlink: str | None = None
    directory: bool = False
    fifo: bool = False


@dataclasses.dataclass(frozen=True)
class Expect:
    """What a unary call (or a stream's end) must produce."""

    code: str = "OK"
    message_contains: tuple[str, ...] = ()
    response: Mapping[str, Any] | None = None
    headers: Mapping[str, str] | None = None
    trailers: Mapping[str, str] | None = None
    within_ms: int | None = None


@dataclasses.dataclass(frozen=True)
class Step:
    """Base of every step: where it was written, for error messages."""

    where: str


@dataclasses.dataclass(frozen=True)
class Call(Step):
    """A unary call and what it must return."""

    method: str
    client: str
    request: Mapping[str, Any]
    metadata: Mapping[str, str]
    timeout_ms: int
    expect: Expect
    capture: str | None
    record: bool


@dataclasses.dataclass(frozen=True)
class Open(Step):
    """Open a stream; by default wait until the subscription is live (its headers)."""

    method: str
    client: str
    stream: str
    request: Mapping[str, Any] | None
    metadata: Mapping[str, str]
    timeout_ms: int
    wait_headers: bool
    unchecked: bool
    headers: Mapping[str, str] | None = None


@dataclasses.dataclass(frozen=True)
class Send(Step):
    """Send one TaskEventStreamRequest on a bidi stream."""

    stream: str
    message: Mapping[str, Any]
    wait_headers: bool


@dataclasses.dataclass(frozen=True)
class CloseSend(Step):
    """Half-close a bidi stream."""

    stream: str


@dataclasses.dataclass(frozen=True)
class Cancel(Step):
    """Cancel a stream from the client; it must then end with `code`."""

    stream: str
    code: str


@dataclasses.dataclass(frozen=True)
class ExpectEvents(Step):
    """The next events on a stream, then nothing more for `quiet_ms`."""

    stream: str
    events: tuple[Mapping[str, Any], ...] | None
    unordered: tuple[Mapping[str, Any], ...] | None
    count: int | None
    each: Mapping[str, Any] | None
    distinct: str | None
    ordered_within: tuple[str, str] | None  # (field path, regex with group and index)
    quiet_ms: int
    within_ms: int
    capture: Mapping[str, int]


@dataclasses.dataclass(frozen=True)
class ExpectEnd(Step):
    """The stream ends (after every event so far was expected) with this status."""

    stream: str
    expect: Expect
    capture: str | None


@dataclasses.dataclass(frozen=True)
class ExpectQuiet(Step):
    """No event arrives on the stream for `ms` milliseconds."""

    stream: str
    ms: int


@dataclasses.dataclass(frozen=True)
class ExpectSame(Step):
    """These streams (every fanout instance of each) received identical events, in order."""

    streams: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Sleep(Step):
    """Wait; use sparingly, prefer expectations with windows."""

    ms: int


@dataclasses.dataclass(frozen=True)
class Server(Step):
    """Stop, start or restart (graceful stop, same port and database) the server."""

    action: Literal["stop", "start", "restart"]


@dataclasses.dataclass(frozen=True)
class Connect(Step):
    """Reconnect one client with other credentials than the case's default."""

    client: str
    # None: no token; a string: that token; DEFAULT_TOKEN: the case's first token.
    token: str | None
    certificate: Literal["valid", "none", "foreign"]


@dataclasses.dataclass(frozen=True)
class Security:
    """A case's server security: TLS (`server` or `mutual`) and accepted bearer tokens."""

    tls: Literal["none", "server", "mutual"] = "none"
    tokens: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Parallel(Step):
    """Run the branches concurrently; the step is done when all are."""

    branches: tuple[tuple[Step, ...], ...]


@dataclasses.dataclass(frozen=True)
class Repeat(Step):
    """Run the steps `times` times, with `${<var>}` = 1, 2, …"""

    times: int
    var: str
    steps: tuple[Step, ...]


@dataclasses.dataclass(frozen=True, eq=False)  # identity: a case is equal only to itself
class Case:
    """One conformance case."""

    name: str
    description: str
    source: pathlib.Path
    roles: tuple[str, ...]
    fanout: frozenset[str]
    matrix: Literal["full", "alone"]
    files: tuple[FileSpec, ...]
    server_args: tuple[str, ...]
    steps: tuple[Step, ...]
    security: Security | None = None

    def walk(self) -> Iterator[Step]:
        """Every step, nested ones included, in script order."""
        yield from walk(self.steps)


def walk(steps: Sequence[Step]) -> Iterator[Step]:
    """Every step, nested ones included, in script order."""
    for step in steps:
        yield step
        if isinstance(step, Parallel):
            for branch in step.branches:
                yield from walk(branch)
        elif isinstance(step, Repeat):
            yield from walk(step.steps)


# --- parsing ---------------------------------------------------------------------


class _Fields:
    """A step's mapping, read key by key so that leftover (misspelt) keys are caught."""

    def __init__(self, raw: Mapping[str, Any], where: str) -> None:
        if not isinstance(raw, Mapping):
            raise CaseError(f"{where}: expected a mapping, got {raw!r}")
        self.raw = dict(raw)
        self.where = where

    def take(self, key: str, default: Any = None) -> Any:
        return self.raw.pop(key, default)

    def need(self, key: str) -> Any:
        if key not in self.raw:
            raise CaseError(f"{self.where}: `{key}` is required")
        return self.raw.pop(key)

    def done(self) -> None:
        if self.raw:
            raise CaseError(f"{self.where}: unknown keys {sorted(self.raw)}")


def _int(value: Any, where: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise CaseError(f"{where}: expected an integer >= {minimum}, got {value!r}")
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise CaseError(f"{where}: expected a non-empty string, got {value!r}")
    return value


def _code(value: Any, where: str) -> str:
    if value not in CODES:
        raise CaseError(f"{where}: {value!r} is not a gRPC status code name ({', '.join(CODES)})")
    return str(value)


def _str_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise CaseError(f"{where}: expected a mapping of strings to strings")
    return dict(value)


def _expect(raw: Any, where: str) -> Expect:
    if raw is None:
        return Expect()
    if isinstance(raw, str):
        return Expect(code=_code(raw, where))
    fields = _Fields(raw, where)
    contains = fields.take("message_contains", ())
    if isinstance(contains, str):
        contains = (contains,)
    expect = Expect(
        code=_code(fields.take("code", "OK"), f"{where}.code"),
        message_contains=tuple(_str(c, f"{where}.message_contains") for c in contains),
        response=fields.take("response"),
        headers=_str_map(fields.take("headers"), f"{where}.headers") or None,
        trailers=_str_map(fields.take("trailers"), f"{where}.trailers") or None,
        within_ms=fields.take("within_ms"),
    )
    fields.done()
    if expect.within_ms is not None:
        _int(expect.within_ms, f"{where}.within_ms", minimum=1)
    return expect


def _steps(raw: Any, where: str, case: _CaseContext) -> tuple[Step, ...]:
    if not isinstance(raw, list) or not raw:
        raise CaseError(f"{where}: expected a non-empty list of steps")
    return tuple(_step(item, f"{where}[{i + 1}]", case) for i, item in enumerate(raw))


@dataclasses.dataclass
class _CaseContext:
    roles: tuple[str, ...]
    service: ServiceDescriptor
    within_ms: int = DEFAULT_WITHIN_MS
    security: Security | None = None

    def role(self, value: Any, where: str) -> str:
        if value is None:
            if len(self.roles) == 1:
                return self.roles[0]
            raise CaseError(f"{where}: `client` is required when a case has several clients")
        if value not in self.roles:
            raise CaseError(f"{where}: unknown client {value!r} (clients: {list(self.roles)})")
        return str(value)


_KINDS = (
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
)


def _step(raw: Any, where: str, case: _CaseContext) -> Step:
    fields = _Fields(raw, where)
    kinds = [k for k in _KINDS if k in fields.raw]
    if len(kinds) != 1:
        raise CaseError(f"{where}: a step needs exactly one of {', '.join(_KINDS)}; got {kinds}")
    kind = kinds[0]
    value = fields.take(kind)
    where = f"{where} ({kind})"
    fields.where = where
    step = _PARSERS[kind](value, fields, case)
    fields.done()
    return step


def _parse_call(value: Any, f: _Fields, case: _CaseContext) -> Step:
    method = case.service.methods_by_name.get(value)
    if method is None or method.client_streaming or method.server_streaming:
        raise CaseError(f"{f.where}: {value!r} is not a unary method of {case.service.name}")
    request = f.take("request") or {}
    check_fields(method.input_type, request, f"{f.where}.request")
    expect = _expect(f.take("expect"), f"{f.where}.expect")
    if expect.response is not None:
        check_fields(method.output_type, expect.response, f"{f.where}.expect.response")
    capture = f.take("capture")
    if capture is not None and not NAME.match(str(capture)):
        raise CaseError(f"{f.where}: capture name {capture!r} must match {NAME.pattern}")
    return Call(
        where=f.where,
        method=value,
        client=case.role(f.take("client"), f.where),
        request=request,
        metadata=_str_map(f.take("metadata"), f"{f.where}.metadata"),
        timeout_ms=_int(f.take("timeout_ms", 0), f"{f.where}.timeout_ms"),
        expect=expect,
        capture=capture,
        record=bool(f.take("record", True)),
    )


def _parse_open(value: Any, f: _Fields, case: _CaseContext) -> Step:
    method = case.service.methods_by_name.get(value)
    if method is None or not method.server_streaming:
        raise CaseError(f"{f.where}: {value!r} is not a streaming method of {case.service.name}")
    request = f.take("request")
    if method.client_streaming and request is not None:
        raise CaseError(f"{f.where}: {value} takes its messages from `send` steps, not `request`")
    if request is not None:
        check_fields(method.input_type, request, f"{f.where}.request")
    return Open(
        where=f.where,
        method=value,
        client=case.role(f.take("client"), f.where),
        stream=_stream_name(f.need("stream"), f.where),
        request=request if not method.client_streaming else None,
        metadata=_str_map(f.take("metadata"), f"{f.where}.metadata"),
        timeout_ms=_int(f.take("timeout_ms", 0), f"{f.where}.timeout_ms"),
        # A bidi stream has no headers until its `subscribe` arrives.
        wait_headers=bool(f.take("wait_headers", not method.client_streaming)),
        unchecked=bool(f.take("unchecked", False)),
        headers=_str_map(f.take("headers"), f"{f.where}.headers") or None,
    )


def _stream_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not NAME.match(value):
        raise CaseError(f"{where}: stream name {value!r} must match {NAME.pattern}")
    return value


def _parse_send(value: Any, f: _Fields, case: _CaseContext) -> Step:
    message = f.need("message")
    bidi = case.service.methods_by_name["TaskEventStream"].input_type
    check_fields(bidi, message, f"{f.where}.message")
    return Send(
        where=f.where,
        stream=_stream_name(value, f.where),
        message=message,
        wait_headers=bool(f.take("wait_headers", "subscribe" in message)),
    )


def _parse_close_send(value: Any, f: _Fields, case: _CaseContext) -> Step:
    return CloseSend(where=f.where, stream=_stream_name(value, f.where))


def _parse_cancel(value: Any, f: _Fields, case: _CaseContext) -> Step:
    return Cancel(
        where=f.where,
        stream=_stream_name(value, f.where),
        code=_code(f.take("code", "CANCELLED"), f.where),
    )


def _event_matchers(value: Any, where: str, service: ServiceDescriptor) -> tuple[Any, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise CaseError(f"{where}: expected a list of event matchers")
    event = service.methods_by_name["SubscribeToTaskEvents"].output_type
    for i, matcher in enumerate(value):
        check_fields(event, matcher, f"{where}[{i + 1}]")
    return tuple(value)


def _parse_expect_events(value: Any, f: _Fields, case: _CaseContext) -> Step:
    event = case.service.methods_by_name["SubscribeToTaskEvents"].output_type
    events = _event_matchers(f.take("events"), f"{f.where}.events", case.service)
    unordered = _event_matchers(f.take("unordered"), f"{f.where}.unordered", case.service)
    count = f.take("count")
    if sum(x is not None for x in (events, unordered, count)) != 1:
        raise CaseError(f"{f.where}: give exactly one of `events`, `unordered` or `count`")
    if count is not None:
        _int(count, f"{f.where}.count")
    each = f.take("each")
    if each is not None:
        check_fields(event, each, f"{f.where}.each")
    within = f.take("ordered_within")
    ordered_within = None
    if within is not None:
        wf = _Fields(within, f"{f.where}.ordered_within")
        ordered_within = (_str(wf.need("field"), wf.where), _str(wf.need("pattern"), wf.where))
        wf.done()
        pattern = re.compile(ordered_within[1])
        if not {"group", "index"} <= set(pattern.groupindex):
            raise CaseError(f"{wf.where}: the pattern needs named groups `group` and `index`")
    capture = f.take("capture") or {}
    if not isinstance(capture, Mapping) or not all(
        NAME.match(str(k)) and isinstance(v, int) for k, v in capture.items()
    ):
        raise CaseError(f"{f.where}.capture: expected a mapping of names to event indexes")
    return ExpectEvents(
        where=f.where,
        stream=_stream_name(value, f.where),
        events=events,
        unordered=unordered,
        count=count,
        each=each,
        distinct=f.take("distinct"),
        ordered_within=ordered_within,
        quiet_ms=_int(f.take("quiet_ms", DEFAULT_QUIET_MS), f"{f.where}.quiet_ms"),
        within_ms=_int(f.take("within_ms", case.within_ms), f"{f.where}.within_ms", minimum=1),
        capture=dict(capture),
    )


def _parse_expect_end(value: Any, f: _Fields, case: _CaseContext) -> Step:
    raw = {k: f.take(k) for k in ("code", "message_contains", "trailers", "within_ms")}
    raw = {k: v for k, v in raw.items() if v is not None}
    capture = f.take("capture")
    if capture is not None and not NAME.match(str(capture)):
        raise CaseError(f"{f.where}: capture name {capture!r} must match {NAME.pattern}")
    return ExpectEnd(
        where=f.where,
        stream=_stream_name(value, f.where),
        expect=_expect(raw, f.where),
        capture=capture,
    )


def _parse_expect_quiet(value: Any, f: _Fields, case: _CaseContext) -> Step:
    return ExpectQuiet(
        where=f.where,
        stream=_stream_name(value, f.where),
        ms=_int(f.take("ms", DEFAULT_QUIET_MS), f"{f.where}.ms", minimum=1),
    )


def _parse_expect_same(value: Any, f: _Fields, case: _CaseContext) -> Step:
    if not isinstance(value, list) or not value:
        raise CaseError(f"{f.where}: expected a list of stream names")
    return ExpectSame(where=f.where, streams=tuple(_stream_name(s, f.where) for s in value))


def _parse_sleep(value: Any, f: _Fields, case: _CaseContext) -> Step:
    return Sleep(where=f.where, ms=_int(value, f.where, minimum=1))


def _parse_server(value: Any, f: _Fields, case: _CaseContext) -> Step:
    if value not in ("stop", "start", "restart"):
        raise CaseError(f"{f.where}: expected stop, start or restart")
    return Server(where=f.where, action=value)


# `token:` left out of a connect step: the case's first token.
DEFAULT_TOKEN = "\x00default"
_TOKEN = re.compile(r"^[!-~]+$")  # printable ASCII without spaces: a valid header value


def _token(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _TOKEN.match(value) or value.startswith("#"):
        raise CaseError(
            f"{where}: a token is printable ASCII without spaces, not starting with #; "
            f"got {value!r}"
        )
    return value


def _parse_connect(value: Any, f: _Fields, case: _CaseContext) -> Step:
    fields = _Fields(value if value is not None else {}, f.where)
    client = case.role(fields.take("client"), f.where)
    if case.security is None:
        raise CaseError(f"{f.where}: `connect` needs a case-level `security:` block")
    token: str | None = DEFAULT_TOKEN
    if "token" in fields.raw:
        raw_token = fields.take("token")
        token = None if raw_token is None else _token(raw_token, f"{f.where}.token")
    if token not in (None, DEFAULT_TOKEN) and not case.security.tokens:
        raise CaseError(f"{f.where}: a token needs `security.tokens`")
    certificate = fields.take("certificate", "valid")
    if certificate not in ("valid", "none", "foreign"):
        raise CaseError(f"{f.where}.certificate: expected valid, none or foreign")
    if certificate != "valid" and case.security.tls != "mutual":
        raise CaseError(f"{f.where}.certificate: only `security.tls: mutual` uses certificates")
    fields.done()
    return Connect(where=f.where, client=client, token=token, certificate=certificate)


def _security(raw: Any, where: str) -> Security | None:
    if raw is None:
        return None
    fields = _Fields(raw, where)
    tls = fields.take("tls", "none")
    if tls not in ("none", "server", "mutual"):
        raise CaseError(f"{where}.tls: expected none, server or mutual")
    tokens = fields.take("tokens", [])
    if not isinstance(tokens, list):
        raise CaseError(f"{where}.tokens: expected a list of tokens")
    tokens = tuple(_token(t, f"{where}.tokens") for t in tokens)
    if len(set(tokens)) != len(tokens):
        raise CaseError(f"{where}.tokens: a token is listed twice")
    fields.done()
    if tls == "none" and not tokens:
        raise CaseError(f"{where}: give `tls: server|mutual`, `tokens`, or both")
    return Security(tls=tls, tokens=tokens)


def _parse_parallel(value: Any, f: _Fields, case: _CaseContext) -> Step:
    if not isinstance(value, list) or len(value) < 2:
        raise CaseError(f"{f.where}: expected a list of at least two branches")
    branches = []
    for i, branch in enumerate(value):
        # A branch is one step, or `- [steps...]` for a sequence.
        items = branch if isinstance(branch, list) else [branch]
        branches.append(_steps(items, f"{f.where}.branch[{i + 1}]", case))
    return Parallel(where=f.where, branches=tuple(branches))


def _parse_repeat(value: Any, f: _Fields, case: _CaseContext) -> Step:
    var = f.take("as", "i")
    if not NAME.match(str(var)):
        raise CaseError(f"{f.where}: `as` must be a name")
    return Repeat(
        where=f.where,
        times=_int(value, f.where, minimum=1),
        var=var,
        steps=_steps(f.need("steps"), f"{f.where}.steps", case),
    )


_PARSERS = {
    "call": _parse_call,
    "open": _parse_open,
    "send": _parse_send,
    "close_send": _parse_close_send,
    "cancel": _parse_cancel,
    "expect_events": _parse_expect_events,
    "expect_end": _parse_expect_end,
    "expect_quiet": _parse_expect_quiet,
    "expect_same": _parse_expect_same,
    "sleep": _parse_sleep,
    "server": _parse_server,
    "connect": _parse_connect,
    "parallel": _parse_parallel,
    "repeat": _parse_repeat,
}


# --- static checks -----------------------------------------------------------------


def check_fields(descriptor: Descriptor, values: Any, where: str) -> None:
    """Fail on field names the message does not have, however deep; values are not checked.

    Values may hold `${...}` references resolved only at run time, so only the
    shape is checked here. Keys starting with `$` are matchers, not fields.
    """
    if not isinstance(values, Mapping):
        if isinstance(values, str) and values.startswith("$"):
            return
        raise CaseError(f"{where}: expected a mapping for {descriptor.name}, got {values!r}")
    for name, value in values.items():
        if str(name).startswith("$"):
            continue
        try:
            field = messages.field_of(descriptor, str(name), where)
        except messages.MessageError as exc:
            raise CaseError(str(exc)) from None
        if messages.is_map(field) or field.message_type is None:
            continue
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, Mapping) and not any(str(k).startswith("$") for k in item):
                check_fields(field.message_type, item, f"{where}.{name}")


def _check_streams(case: Case) -> None:
    opened: dict[str, str] = {}
    for step in case.walk():
        if isinstance(step, Open):
            if step.stream in opened:
                raise CaseError(f"{step.where}: stream {step.stream!r} is opened twice")
            opened[step.stream] = step.method
            continue
        names: tuple[str, ...] = ()
        if isinstance(step, Send | CloseSend | Cancel | ExpectEvents | ExpectEnd | ExpectQuiet):
            names = (step.stream,)
        elif isinstance(step, ExpectSame):
            names = step.streams
        for name in names:
            if name not in opened:
                raise CaseError(f"{step.where}: stream {name!r} is not opened by an earlier step")
            if isinstance(step, Send | CloseSend) and opened[name] != "TaskEventStream":
                raise CaseError(f"{step.where}: stream {name!r} is not a TaskEventStream")


def _file_specs(raw: Any, where: str) -> tuple[FileSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise CaseError(f"{where}: expected a mapping of paths to contents")
    specs = []
    for path, content in raw.items():
        here = f"{where}[{path!r}]"
        if pathlib.PurePosixPath(path).is_absolute():
            raise CaseError(f"{here}: paths are relative to the server's project directory")
        if isinstance(content, str):
            specs.append(FileSpec(path=path, text=content))
            continue
        fields = _Fields(content, here)
        spec = FileSpec(
            path=path,
            text=fields.take("text"),
            hex=fields.take("hex"),
            symlink=fields.take("symlink"),
            directory=bool(fields.take("directory", False)),
            fifo=bool(fields.take("fifo", False)),
        )
        repeat = fields.take("repeat")
        if repeat is not None:
            if not (isinstance(repeat, list) and len(repeat) == 2 and isinstance(repeat[1], int)):
                raise CaseError(f"{here}.repeat: expected [text, count]")
            spec = dataclasses.replace(spec, text=str(repeat[0]) * repeat[1])
        fields.done()
        kinds = [spec.text, spec.hex, spec.symlink, spec.directory or None, spec.fifo or None]
        if sum(k is not None for k in kinds) != 1:
            raise CaseError(f"{here}: give one of text, repeat, hex, symlink, directory, fifo")
        specs.append(spec)
    return tuple(specs)


def parse_case(
    raw: Any,
    source: pathlib.Path,
    service: ServiceDescriptor,
    within_ms: int = DEFAULT_WITHIN_MS,
) -> Case:
    """Build one case from its YAML mapping; `within_ms` is the default wait for events."""
    name = raw.get("name") if isinstance(raw, Mapping) else None
    where = f"{source.name}: case {name!r}"
    fields = _Fields(raw, where)
    name = _str(fields.need("name"), where)
    if not NAME.match(name):
        raise CaseError(f"{where}: case names must match {NAME.pattern}")
    roles = fields.take("clients", [DEFAULT_ROLE])
    if not isinstance(roles, list) or not roles or not all(NAME.match(str(r)) for r in roles):
        raise CaseError(f"{where}: `clients` must be a non-empty list of names")
    if len(set(roles)) != len(roles):
        raise CaseError(f"{where}: `clients` lists a name twice")
    fanout = fields.take("fanout", [])
    if not isinstance(fanout, list) or not set(fanout) <= set(roles):
        raise CaseError(f"{where}: `fanout` must list some of the case's clients")
    matrix = fields.take("matrix", "full")
    if matrix not in ("full", "alone"):
        raise CaseError(f"{where}: `matrix` is `full` (every mix of languages) or `alone`")
    server_args = fields.take("server_args", [])
    if not isinstance(server_args, list) or not all(isinstance(a, str) for a in server_args):
        raise CaseError(f"{where}: `server_args` must be a list of strings")
    security = _security(fields.take("security"), f"{where}.security")
    if security is not None and any(a.startswith(("--tls-", "--auth-token")) for a in server_args):
        raise CaseError(f"{where}: with `security:`, leave the TLS and token flags to the runner")
    context = _CaseContext(
        roles=tuple(roles), service=service, within_ms=within_ms, security=security
    )
    case = Case(
        name=name,
        description=str(fields.need("description")).strip(),
        source=source,
        roles=tuple(roles),
        fanout=frozenset(fanout),
        matrix=matrix,
        files=_file_specs(fields.take("files"), f"{where}.files"),
        server_args=tuple(server_args),
        steps=_steps(fields.need("steps"), f"{where}.steps", context),
        security=security,
    )
    fields.done()
    _check_streams(case)
    return case


def load_cases(
    directory: pathlib.Path = CASES_DIR,
    service: ServiceDescriptor = messages.SERVICE,
    *,
    within_ms: int = DEFAULT_WITHIN_MS,
) -> list[Case]:
    """Load and check every case in every *.yaml file of the directory, sorted by name.

    `within_ms` is how long `expect_events` waits by default; a self-test,
    where a failed wait is the expected outcome, shortens it.
    """
    cases: dict[str, Case] = {}
    for path in sorted(directory.glob("*.yaml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(document, Mapping) or not isinstance(document.get("cases"), list):
            raise CaseError(f"{path.name}: expected a mapping with a `cases:` list")
        for raw in document["cases"]:
            case = parse_case(raw, path, service, within_ms)
            if case.name in cases:
                raise CaseError(
                    f"{path.name}: case {case.name!r} is also defined in "
                    f"{cases[case.name].source.name}"
                )
            cases[case.name] = case
    return sorted(cases.values(), key=lambda c: c.name)
