"""Loading cases: from YAML, checked, and turned into the dataclasses the runner reads.

Every file in conformance/cases/ holds `cases:`, a list of cases. A case names
its clients (roles), optionally files for the server's project directory and
extra server flags, and a script of steps. The JSON Schema in
case.schema.json (with messages.schema.json, generated from the proto) is the
format's source of truth; conformance/README.md documents it with examples.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Mapping
from typing import Any

import jsonschema
import yaml
from google.protobuf.descriptor import ServiceDescriptor

from conformance.cases import bindings, messages, schema
from conformance.cases.model import (
    CASES_DIR,
    DEFAULT_QUIET_MS,
    DEFAULT_ROLE,
    DEFAULT_TOKEN,
    DEFAULT_WITHIN_MS,
    Call,
    Cancel,
    Case,
    CaseError,
    CloseSend,
    Connect,
    Discover,
    Expect,
    ExpectEnd,
    ExpectEvents,
    ExpectQuiet,
    ExpectSame,
    FileSpec,
    Open,
    Parallel,
    Repeat,
    Security,
    Send,
    Server,
    Sleep,
    Step,
)
from conformance.targets import capabilities

# --- reading ---------------------------------------------------------------------
#
# A case file is checked in two passes. The JSON Schema (case.schema.json and
# the generated messages.schema.json) checks every key and value that can be
# checked alone: step kinds, field names, enum names, codes. What depends on
# the rest of the case (its roles, its streams, its security block) is checked
# here, while the checked YAML is turned into the dataclasses above.

MAX_REPORTED = 8


class _Context:
    """What a step's meaning depends on: the case's roles, security and default wait."""

    def __init__(self, roles: tuple[str, ...], security: Security | None, within_ms: int) -> None:
        self.roles = roles
        self.security = security
        self.within_ms = within_ms

    def role(self, value: str | None, where: str) -> str:
        if value is None:
            if len(self.roles) == 1:
                return self.roles[0]
            raise CaseError(f"{where}: `client` is required when a case has several clients")
        if value not in self.roles:
            raise CaseError(f"{where}: unknown client {value!r} (clients: {list(self.roles)})")
        return value


def _kind(raw: Mapping[str, Any]) -> str:
    return next(k for k in schema.STEP_KINDS if k in raw)


def _steps(raw: list[Any], where: str, context: _Context) -> tuple[Step, ...]:
    return tuple(_step(item, f"{where}[{i + 1}]", context) for i, item in enumerate(raw))


def _expect(raw: Any) -> Expect:
    if raw is None:
        return Expect()
    if isinstance(raw, str):
        return Expect(code=raw)
    contains = raw.get("message_contains", ())
    return Expect(
        code=raw.get("code", "OK"),
        message_contains=(contains,) if isinstance(contains, str) else tuple(contains),
        response=raw.get("response"),
        headers=raw.get("headers") or None,
        trailers=raw.get("trailers") or None,
        within_ms=raw.get("within_ms"),
    )


def _step(raw: Mapping[str, Any], where: str, context: _Context) -> Step:
    kind = _kind(raw)
    where = f"{where} ({kind})"
    value = raw[kind]
    metadata = raw.get("metadata") or {}
    if kind == "call":
        return Call(
            where=where,
            method=value,
            client=context.role(raw.get("client"), where),
            request=raw.get("request") or {},
            metadata=metadata,
            timeout_ms=raw.get("timeout_ms", 0),
            expect=_expect(raw.get("expect")),
            capture=raw.get("capture"),
            record=raw.get("record", True),
        )
    if kind == "open":
        bidi = messages.SERVICE.methods_by_name[value].client_streaming
        if bidi and "request" in raw:
            raise CaseError(f"{where}: {value} takes its messages from `send` steps, not `request`")
        return Open(
            where=where,
            method=value,
            client=context.role(raw.get("client"), where),
            stream=raw["stream"],
            request=raw.get("request"),
            metadata=metadata,
            timeout_ms=raw.get("timeout_ms", 0),
            # A bidi stream has no headers until its `subscribe` arrives.
            wait_headers=raw.get("wait_headers", not bidi),
            unchecked=raw.get("unchecked", False),
            headers=raw.get("headers") or None,
        )
    if kind == "send":
        message = raw["message"]
        wait = raw.get("wait_headers", isinstance(message, Mapping) and "subscribe" in message)
        return Send(where=where, stream=value, message=message, wait_headers=wait)
    if kind == "close_send":
        return CloseSend(where=where, stream=value)
    if kind == "cancel":
        return Cancel(where=where, stream=value, code=raw.get("code", "CANCELLED"))
    if kind == "expect_events":
        return _expect_events(raw, where, context)
    if kind == "expect_end":
        return ExpectEnd(
            where=where, stream=value, expect=_expect(dict(raw)), capture=raw.get("capture")
        )
    if kind == "expect_quiet":
        return ExpectQuiet(where=where, stream=value, ms=raw.get("ms", DEFAULT_QUIET_MS))
    if kind == "expect_same":
        return ExpectSame(where=where, streams=tuple(value))
    if kind == "sleep":
        return Sleep(where=where, ms=value)
    if kind == "server":
        return Server(where=where, action=value)
    if kind == "connect":
        return _connect(value or {}, where, context)
    if kind == "discover":
        if context.security is not None and context.security.tokens:
            raise CaseError(f"{where}: `discover` does not send tokens; leave out security.tokens")
        return Discover(
            where=where,
            hosts=tuple(value.get("hosts", ["127.0.0.1"])),
            services=tuple(value.get("services", [])),
            health=dict(value.get("health", {})),
        )
    if kind == "parallel":
        branches = (
            _steps(
                branch if isinstance(branch, list) else [branch],
                f"{where}.branch[{i + 1}]",
                context,
            )
            for i, branch in enumerate(value)
        )
        return Parallel(where=where, branches=tuple(branches))
    assert kind == "repeat"
    return Repeat(
        where=where,
        times=value,
        var=raw.get("as", "i"),
        steps=_steps(raw["steps"], f"{where}.steps", context),
    )


def _expect_events(raw: Mapping[str, Any], where: str, context: _Context) -> ExpectEvents:
    within = raw.get("ordered_within")
    ordered_within = None
    if within is not None:
        ordered_within = (within["field"], within["pattern"])
        try:
            groups = set(re.compile(within["pattern"]).groupindex)
        except re.error as exc:
            raise CaseError(f"{where}.ordered_within.pattern: {exc}") from None
        if not {"group", "index"} <= groups:
            raise CaseError(
                f"{where}.ordered_within.pattern: needs named groups `group` and `index`"
            )
    events, unordered = raw.get("events"), raw.get("unordered")
    return ExpectEvents(
        where=where,
        stream=raw["expect_events"],
        events=tuple(events) if events is not None else None,
        unordered=tuple(unordered) if unordered is not None else None,
        count=raw.get("count"),
        each=raw.get("each"),
        distinct=raw.get("distinct"),
        ordered_within=ordered_within,
        quiet_ms=raw.get("quiet_ms", DEFAULT_QUIET_MS),
        within_ms=raw.get("within_ms", context.within_ms),
        capture=dict(raw.get("capture") or {}),
    )


def _connect(raw: Mapping[str, Any], where: str, context: _Context) -> Connect:
    client = context.role(raw.get("client"), where)
    security = context.security
    if security is None:
        raise CaseError(f"{where}: `connect` needs a case-level `security:` block")
    token = raw.get("token", DEFAULT_TOKEN)
    if token not in (None, DEFAULT_TOKEN) and not security.tokens:
        raise CaseError(f"{where}.token: a token needs `security.tokens`")
    certificate = raw.get("certificate", "valid")
    if certificate != "valid" and security.tls != "mutual":
        raise CaseError(f"{where}.certificate: only `security.tls: mutual` uses certificates")
    return Connect(where=where, client=client, token=token, certificate=certificate)


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


# --- paths: a case is input, and every path it names stays inside its run -----------
#
# A run's directory holds the server's project directory (`project/`, where
# the server starts and `files:` are written) beside the runner's own files.
# A case may name paths in `files:` (and their symlinks) and in `server_args`;
# each must resolve inside the run's directory, following the symlinks the
# case itself creates. The runner creates nothing else there before the server
# starts, so these are all the symlinks a path can meet.

# `rig grpc` flags whose value is a path the server opens, reads or writes
# (tests/test_conformance.py checks this against `rig grpc`'s parser).
PATH_FLAGS = (
    "--db",
    "--ready-file",
    "--tls-cert",
    "--tls-key",
    "--tls-client-ca",
    "--auth-token-file",
)
# Where the server starts, inside the run's directory.
PROJECT = ("project",)
# As Linux gives up following symlinks (ELOOP).
MAX_SYMLINKS = 40


class _Loop(Exception):
    """A path that goes round a loop of symlinks."""


class _RunTree:
    """The symlinks a case creates, to resolve its paths as the OS will, before anything runs.

    Paths are tuples of names relative to the run's directory; None is a path
    that leaves it. `outside_root` records whether some file or symlink target
    lies beside the project directory rather than in it.
    """

    def __init__(self) -> None:
        self.links: dict[tuple[str, ...], str] = {}
        self.outside_root = False

    def note(self, path: tuple[str, ...]) -> tuple[str, ...]:
        """Record whether `path` lies outside the project directory; return it."""
        if path[: len(PROJECT)] != PROJECT:
            self.outside_root = True
        return path

    def resolve(
        self, base: tuple[str, ...], path: str, *, follow_last: bool = True
    ) -> tuple[str, ...] | None:
        """Where `path`, relative to `base`, leads; None if it leaves the run's directory."""
        if path.startswith("/"):
            return None
        current = list(base)
        todo = path.split("/")[::-1]  # the next name last
        hops = 0
        while todo:
            name = todo.pop()
            if name in ("", "."):
                continue
            if name == "..":
                if not current:
                    return None
                current.pop()
                continue
            current.append(name)
            target = self.links.get(tuple(current))
            if target is None or not (todo or follow_last):
                continue
            hops += 1
            if hops > MAX_SYMLINKS:
                raise _Loop()
            if target.startswith("/"):
                return None
            current.pop()
            todo.extend(target.split("/")[::-1])
        return tuple(current)


def _check_files(files: tuple[FileSpec, ...], where: str) -> _RunTree:
    """Refuse a file or symlink that leads out of the run's directory; the case's symlinks."""
    tree = _RunTree()
    for spec in files:
        try:
            if spec.symlink is None:
                placed = tree.resolve(PROJECT, spec.path)
                if placed is None:
                    raise CaseError(
                        f"{where}: files: {spec.path!r} leads outside the run's directory"
                    )
                tree.note(placed)
                continue
            link = tree.resolve(PROJECT, spec.path, follow_last=False)
            if link is None:
                raise CaseError(f"{where}: files: {spec.path!r} leads outside the run's directory")
            tree.note(link)
            pointed = tree.resolve(link[:-1], spec.symlink)
            if pointed is None:
                raise CaseError(
                    f"{where}: files: {spec.path!r}: its symlink {spec.symlink!r} leads outside "
                    "the run's directory"
                )
            tree.note(pointed)
        except _Loop:
            raise CaseError(
                f"{where}: files: {spec.path!r} goes round a loop of symlinks"
            ) from None
        tree.links[link] = spec.symlink
    return tree


def _path_flag(word: str) -> str | None:
    """The path flag `word` (`--flag` or `--flag=value`) names, as argparse reads it."""
    name = word.partition("=")[0]
    if not name.startswith("--") or len(name) < 3:
        return None
    # argparse also takes an unambiguous prefix of a flag (`--ready`).
    matches = [flag for flag in PATH_FLAGS if flag.startswith(name)]
    return matches[0] if matches else None


def _check_server_args(args: tuple[str, ...], tree: _RunTree, where: str) -> None:
    """Refuse a path flag whose value leads out of the run's directory (or is a database URL)."""
    for index, word in enumerate(args):
        flag = _path_flag(word)
        if flag is None:
            continue
        name, equals, value = word.partition("=")
        if not equals:
            if index + 1 == len(args):
                continue  # no value: the server refuses the flag itself
            value = args[index + 1]
        said = f"{where}: server_args: {name} {value!r}"
        if flag == "--db" and "://" in value:
            raise CaseError(f"{said}: the runner chooses the database; name a file, if any")
        try:
            inside = tree.resolve(PROJECT, value) is not None
        except _Loop:
            raise CaseError(f"{said} goes round a loop of symlinks") from None
        if not inside:
            raise CaseError(
                f"{said} leads outside the run's directory: a case's paths are relative to "
                "the server's project directory and stay inside the run's"
            )


def _file_spec(path: str, content: Any) -> FileSpec:
    if isinstance(content, str):
        return FileSpec(path=path, text=content)
    if "repeat" in content:
        text, count = content["repeat"]
        return FileSpec(path=path, text=text * count)
    return FileSpec(
        path=path,
        text=content.get("text"),
        hex=content.get("hex"),
        symlink=content.get("symlink"),
        directory=bool(content.get("directory", False)),
        fifo=bool(content.get("fifo", False)),
    )


def parse_case(
    raw: Mapping[str, Any], source: pathlib.Path, within_ms: int = DEFAULT_WITHIN_MS
) -> Case:
    """Build one case from its YAML mapping, already checked against the schema.

    `within_ms` is the default wait for events.
    """
    where = f"{source.name}: case {raw['name']!r}"
    roles = tuple(raw.get("clients", [DEFAULT_ROLE]))
    fanout = raw.get("fanout", [])
    if not set(fanout) <= set(roles):
        raise CaseError(f"{where}.fanout: {sorted(set(fanout) - set(roles))} are not clients")
    server_args = tuple(raw.get("server_args", []))
    security = None
    if "security" in raw:
        block = raw["security"]
        security = Security(tls=block.get("tls", "none"), tokens=tuple(block.get("tokens", [])))
        if any(a.startswith(("--tls-", "--auth-token")) for a in server_args):
            raise CaseError(
                f"{where}: with `security:`, leave the TLS and token flags to the runner"
            )
    files = tuple(_file_spec(p, c) for p, c in (raw.get("files") or {}).items())
    tree = _check_files(files, where)
    _check_server_args(server_args, tree, where)
    context = _Context(roles, security, within_ms)
    names, because = _requirements(raw.get("requires", []))
    if len(set(names)) != len(names):
        raise CaseError(f"{where}.requires: a requirement is named twice")
    case = Case(
        name=raw["name"],
        description=str(raw["description"]).strip(),
        source=source,
        roles=roles,
        fanout=frozenset(fanout),
        matrix=raw.get("matrix", "full"),
        files=files,
        server_args=server_args,
        steps=_steps(raw["steps"], f"{where}: steps", context),
        security=security,
        requires=tuple(names),
        because=because,
        files_outside_root=tree.outside_root,
    )
    _check_streams(case)
    return case


def _requirements(raw: list[Any]) -> tuple[list[str], dict[str, str]]:
    """`requires:` items, each a name or `{name: why}`: the names, and the reasons given."""
    names: list[str] = []
    because: dict[str, str] = {}
    for item in raw:
        if isinstance(item, str):
            names.append(item)
            continue
        [(name, why)] = item.items()
        names.append(name)
        because[name] = " ".join(str(why).split())
    return names, because


# ListTasks filters are counted before a run on a server shared with others (the
# run is judged on what it added), so they must be known before it starts.
LIST_FILTERS = ("status", "assignee")


def check_shareable(case: Case) -> None:
    """What lets a case run on a server it shares, or says why it cannot; CaseError if not.

    A need a shared server can never meet (capabilities.REASONED) comes with
    its reason; ListTasks filters are literal; a request names the case's
    files through `${files}/`, which is where they are on every server.
    """
    where = f"{case.source.name}: case {case.name!r}"
    missing = capabilities.unexplained(case)
    if missing:
        raise CaseError(
            f"{where}: needs {', '.join(missing)}: say why in one line, "
            f"`requires: [{{{missing[0]}: <why>}}]` (shown where a target cannot give it)"
        )
    placed = {spec.path.rstrip("/") for spec in case.files}
    for step in case.walk():
        if not isinstance(step, Call):
            continue
        if step.method == "ListTasks":
            for key in LIST_FILTERS:
                if bindings.REFERENCE.search(str(step.request.get(key, ""))):
                    raise CaseError(
                        f"{step.where}: ListTasks.{key} must be written out: on a shared "
                        "server the runner counts its matches before the run begins"
                    )
        for text in capabilities.texts_of(step.request):
            # Files beside the root (`../x`) are named from the root: such a
            # case needs the directory around it, which only a server the
            # runner starts gives, and there `${files}` is the root itself.
            if text.removeprefix("./") in placed and not text.startswith("../"):
                raise CaseError(
                    f"{step.where}: {text!r} is one of the case's files: name it "
                    f"`${{files}}/{text.removeprefix('./')}` (files may live in a folder of "
                    "their own under --target-root)"
                )


def schema_problems(
    document: Any, source: pathlib.Path, validate: jsonschema.Draft202012Validator
) -> list[str]:
    """Every way a case file breaks the schema: `file: case 'name': path: what is wrong`."""
    found: list[str] = []
    errors = sorted(validate.iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path])
    # Where a value breaks a rule deeper down too, the deeper error says more.
    paths = [list(e.absolute_path) for e in errors]
    errors = [
        e
        for e, path in zip(errors, paths, strict=True)
        if not any(len(other) > len(path) and other[: len(path)] == path for other in paths)
    ]
    for error in errors:
        path = list(error.absolute_path)
        text = schema.explain(error)
        if len(path) >= 2 and path[0] == "cases" and isinstance(path[1], int):
            raw = document["cases"][path[1]]
            name = raw.get("name") if isinstance(raw, Mapping) else None
            inside = schema.path_text(path[2:], raw)
            found.append(
                f"{source.name}: case {name!r}: " + (f"{inside}: {text}" if inside else text)
            )
        else:
            inside = schema.path_text(path, document)
            found.append(f"{source.name}: " + (f"{inside}: {text}" if inside else text))
    found = list(dict.fromkeys(found))  # one mistake can break several rules alike
    if len(found) > MAX_REPORTED:
        found = [*found[:MAX_REPORTED], f"… and {len(found) - MAX_REPORTED} more"]
    return found


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
    if service is messages.SERVICE and schema.stale(service):
        raise CaseError(
            f"{schema.MESSAGES_SCHEMA.name} is out of date with the proto: "
            "run `python -m conformance.cases.schema` and commit the result"
        )
    validate = schema.validator(service)
    cases: dict[str, Case] = {}
    for path in sorted(directory.glob("*.yaml")):
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise CaseError(f"{path.name}: not valid YAML: {exc}") from None
        problems = schema_problems(document, path, validate)
        if problems:
            raise CaseError("\n".join(problems))
        for raw in document["cases"]:
            case = parse_case(raw, path, within_ms)
            check_shareable(case)
            if case.name in cases:
                raise CaseError(
                    f"{path.name}: case {case.name!r} is also defined in "
                    f"{cases[case.name].source.name}"
                )
            cases[case.name] = case
    return sorted(cases.values(), key=lambda c: c.name)
