"""The case language as the runner reads it: a case, its steps and what they expect.

conformance/cases/load.py makes these from the YAML files beside this module;
the JSON Schema (case.schema.json) is the format's source of truth.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import grpc

CASES_DIR = pathlib.Path(__file__).parent
DEFAULT_ROLE = "client"
CODES = {code.name: code.value[0] for code in grpc.StatusCode}

# Defaults for timing. Waits end as soon as what is awaited arrives, so a
# generous limit costs nothing on a passing run and keeps a loaded 2-core
# machine from failing runs that are merely slow. Quiet windows always cost
# their full length, so they stay short.
DEFAULT_QUIET_MS = 250
DEFAULT_WITHIN_MS = 10000


class CaseError(ValueError):
    """A case file does not follow the schema."""


# `token:` left out of a connect step: the case's first token.
DEFAULT_TOKEN = "\x00default"


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
class Discover(Step):
    """The runner checks reflection and health itself, on each of these hosts."""

    hosts: tuple[str, ...]
    services: tuple[str, ...]
    health: Mapping[str, str]


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
    # Capabilities written in the case (`requires:`); conformance/targets/capabilities.py
    # adds what it can read off the steps.
    requires: tuple[str, ...] = ()
    # Why the case needs a requirement (`requires: [{restart: why}]`): one line
    # each, shown where a target cannot give it.
    because: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # Some of `files:` (or where a symlink of them points) lies beside the
    # project root rather than in it (`../x`): the case needs the directory around it.
    files_outside_root: bool = False

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
