"""What a case needs from the server and the clients, and whether a target offers it.

A case's requirements are its explicit `requires:` plus what the runner reads
off the case itself:

- **schema** capabilities: the methods it calls and the fields it writes or
  expects (`sequence`, `after_sequence`, `version`, `expected_version`,
  `title_update`, `batches`, `bidi`). A field of the schema with no name here
  is required as `schema:<Message.field>`, so a field added later needs no
  code to be skipped where it does not exist.
- **services** the server runs besides RiggerService (`reflection`,
  `health`), from `discover` steps.
- **behaviour** reflection cannot see (`planner`): only `requires:` says so.
- **control** over the server: `restart` (`server:` steps), `server_flags`
  (`server_args:`), `files` (`files:`, `${files}` or `${root}`: files in the
  server's project root), `server_dir` (files beside the project root),
  `security` (the runner configures TLS and tokens), `log_head` (literal
  sequence numbers, counted from the log's head when the run began),
  `fresh_server` (only written: a server nobody else has written to),
  `loopback` (`discover` dials this machine's loopback names).

A case that needs `restart`, `server_flags`, `server_dir`, `security` or
`fresh_server` says why in its `requires:` (REASONED): those are what a
server shared with others cannot give, and the reason is shown wherever a
run is skipped for it.

A run happens only when the server's profile and the clients' schema offer
every schema, service and behaviour capability, and the target (own server,
`--target-cmd`, `--target`) grants every control need; otherwise it is
reported skipped with the reasons. Nothing is dropped silently.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import Descriptor, FileDescriptor

from conformance import cases as c
from conformance import sources
from conformance.cases import messages
from conformance.suite.plan import Run

SCHEMA, SERVICE, BEHAVIOUR, CONTROL = "schema", "service", "behaviour", "control"
PACKAGE = "rigger.v1"
SERVICE_NAME = f"{PACKAGE}.RiggerService"
RIGGER_PROTO = "rigger/v1/rigger.proto"
# The first release's contract: what its sidecars were generated from.
RELEASED_IMAGE = sources.RELEASED_IMAGE


@dataclasses.dataclass(frozen=True)
class Capability:
    """One named thing a case may need."""

    name: str
    kind: str
    description: str
    # Schema capabilities: the elements (`rigger.v1.Msg.field`, or
    # `rigger.v1.RiggerService.Method`) that make a case need it. The first
    # one decides whether a schema has the capability.
    elements: tuple[str, ...] = ()


def _method(name: str) -> str:
    return f"{SERVICE_NAME}.{name}"


CAPABILITIES: dict[str, Capability] = {
    cap.name: cap
    for cap in (
        Capability(
            "sequence",
            SCHEMA,
            "TaskEvent.sequence (and the rigger-head-sequence / rigger-last-sequence metadata)",
            (f"{PACKAGE}.TaskEvent.sequence",),
        ),
        Capability(
            "after_sequence",
            SCHEMA,
            "replay: SubscribeToTaskEventsRequest.after_sequence",
            (
                f"{PACKAGE}.SubscribeToTaskEventsRequest.after_sequence",
                f"{PACKAGE}.SubscribeToTaskEventBatchesRequest.after_sequence",
            ),
        ),
        Capability("version", SCHEMA, "Task.version", (f"{PACKAGE}.Task.version",)),
        Capability(
            "expected_version",
            SCHEMA,
            "UpdateTaskRequest.expected_version (optimistic concurrency)",
            (f"{PACKAGE}.UpdateTaskRequest.expected_version",),
        ),
        Capability(
            "title_update",
            SCHEMA,
            "UpdateTaskRequest.title",
            (f"{PACKAGE}.UpdateTaskRequest.title",),
        ),
        Capability(
            "batches",
            SCHEMA,
            "the SubscribeToTaskEventBatches method",
            (_method("SubscribeToTaskEventBatches"),),
        ),
        Capability("bidi", SCHEMA, "the TaskEventStream method", (_method("TaskEventStream"),)),
        Capability("reflection", SERVICE, "server reflection (grpc.reflection.v1alpha)"),
        Capability("health", SERVICE, "the standard health service (grpc.health.v1)"),
        Capability(
            "planner",
            BEHAVIOUR,
            "GenerateTasksFromPRD and OrchestrateTask implemented (not UNIMPLEMENTED)",
        ),
        Capability("restart", CONTROL, "the runner stops and starts the server (`server:`)"),
        Capability("server_flags", CONTROL, "the runner passes `rig grpc` flags (`server_args:`)"),
        Capability(
            "files",
            CONTROL,
            "the runner places files in the server's project root (`files:`, `${files}`, "
            "`${root}`): a server it starts, or `--target` with `--target-root`",
        ),
        Capability(
            "server_dir",
            CONTROL,
            "the runner owns the directory around the server's project root "
            "(`files:` beside it, `../x`)",
        ),
        Capability(
            "security", CONTROL, "the runner configures the server's TLS and tokens (`security:`)"
        ),
        Capability(
            "log_head",
            CONTROL,
            "literal sequence numbers count from the log's head when the run began: 0 on a "
            "server the runner starts, the rigger-head-sequence header on a shared one",
        ),
        Capability(
            "fresh_server",
            CONTROL,
            "a server nobody else wrote to (only written in `requires:`, with the reason)",
        ),
        Capability(
            "loopback", CONTROL, "the server listens on this machine's loopback names (`discover`)"
        ),
    )
}
# Metadata keys that carry event sequences.
SEQUENCE_METADATA = frozenset({"rigger-head-sequence", "rigger-last-sequence"})
REFERENCE = re.compile(r"\$\{[^}]+\}")
# `requires:` may name any capability; control needs are inferred, but may be
# written too (say, `fresh_server`, which is never inferred).
NAMES = tuple(CAPABILITIES)
# What a server shared with others can never give: a case needing one says why.
REASONED = ("restart", "server_flags", "server_dir", "security", "fresh_server")


def kind_of(name: str) -> str:
    """The kind of a requirement; `schema:<Msg.field>` ones are schema capabilities."""
    capability = CAPABILITIES.get(name)
    return capability.kind if capability is not None else SCHEMA


def describe(name: str) -> str:
    """A requirement's one-line description."""
    capability = CAPABILITIES.get(name)
    if capability is not None:
        return capability.description
    return f"the schema element {name.removeprefix('schema:')}"


# --- schemas ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Schema:
    """The rigger.v1 elements a server or a client's generated code has."""

    name: str
    elements: frozenset[str]  # `rigger.v1.Msg.field` and `rigger.v1.RiggerService.Method`
    messages: frozenset[str]  # `rigger.v1.Msg`

    def has(self, element: str) -> bool:
        """True when the schema has the element."""
        return element in self.elements

    def knows_method_or_message_of(self, element: str) -> bool:
        """True for a method, and for a field of a message this schema has.

        A field of a message the schema lacks altogether is not counted
        against it: the method that takes the message is.
        """
        owner = element.rpartition(".")[0]
        return owner == SERVICE_NAME or owner in self.messages

    @classmethod
    def of_file(cls, name: str, file: FileDescriptor) -> Schema:
        """The elements of a compiled rigger/v1/rigger.proto."""
        elements: set[str] = set()
        names: set[str] = set()

        def walk(descriptor: Descriptor) -> None:
            names.add(descriptor.full_name)
            elements.update(f"{descriptor.full_name}.{f.name}" for f in descriptor.fields)
            for nested in descriptor.nested_types:
                walk(nested)

        for descriptor in file.message_types_by_name.values():
            walk(descriptor)
        service = file.services_by_name.get("RiggerService")
        if service is not None:
            elements.update(_method(m.name) for m in service.methods)
        return cls(name, frozenset(elements), frozenset(names))

    @classmethod
    def of_image(cls, name: str, path: pathlib.Path) -> Schema:
        """The schema in a buf image or FileDescriptorSet (`buf build -o x.binpb`)."""
        images = descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())
        pool = descriptor_pool.DescriptorPool()
        for file in images.file:
            pool.Add(file)
        return cls.of_file(name, pool.FindFileByName(RIGGER_PROTO))

    def capabilities(self) -> frozenset[str]:
        """The named schema capabilities this schema has."""
        return frozenset(
            cap.name
            for cap in CAPABILITIES.values()
            if cap.kind == SCHEMA and self.has(cap.elements[0])
        )


HEAD = Schema.of_file("head", messages.SERVICE.file)


# --- what a case uses -------------------------------------------------------------


def _fields(descriptor: Descriptor, value: Any, found: set[str]) -> None:
    """Every field element a YAML message value (request or expectation) names."""
    if not isinstance(value, Mapping):
        return
    for key, sub in value.items():
        if not isinstance(key, str):
            continue
        if key.startswith("$"):
            if key == "$not":
                _fields(descriptor, sub, found)
            continue
        field = descriptor.fields_by_name.get(key)
        if field is None:
            continue  # the schema check has already complained
        found.add(f"{descriptor.full_name}.{key}")
        if field.message_type is None or messages.is_map(field):
            continue
        items: Iterable[Any] = [sub]
        if isinstance(sub, list):
            items = sub
        elif isinstance(sub, Mapping) and isinstance(sub.get("$unordered"), list):
            items = sub["$unordered"]
        for item in items:
            _fields(field.message_type, item, found)


def _dotted(descriptor: Descriptor, path: str, found: set[str]) -> None:
    for part in path.split("."):
        field = descriptor.fields_by_name.get(part)
        if field is None:
            return
        found.add(f"{descriptor.full_name}.{part}")
        if field.message_type is None:
            return
        descriptor = field.message_type


def texts_of(value: Any) -> list[str]:
    """Every string in a YAML value (a request, a message), keys left out."""
    return list(_strings(value))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _literal_number(value: Any) -> bool:
    """An integer written in the case, not a `${reference}` nor a matching operator."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and value.isdigit()


def _sequence_literals(value: Any, keys: frozenset[str]) -> bool:
    """True when a key in `keys` holds a literal number anywhere in the value."""
    if isinstance(value, Mapping):
        for key, sub in value.items():
            if key in keys and _literal_number(sub):
                return True
            if _sequence_literals(sub, keys):
                return True
    elif isinstance(value, list | tuple):
        return any(_sequence_literals(item, keys) for item in value)
    return False


_SEQUENCE_KEYS = frozenset({"sequence", "after_sequence"})
# References that name the run's place in the server's project root.
FILE_MARKERS = ("${root}", "${files}")


@dataclasses.dataclass(frozen=True)
class Uses:
    """What a case touches: schema elements, and the rest of its requirements."""

    elements: frozenset[str]
    needs: frozenset[str]  # service, behaviour and control capabilities


def uses(case: c.Case) -> Uses:
    """Everything the case needs, read off its steps (and its `requires:`)."""
    elements: set[str] = set()
    needs: set[str] = set()
    event = messages.SERVICE.file.message_types_by_name["TaskEvent"]
    bidi_request = messages.SERVICE.methods_by_name["TaskEventStream"].input_type
    texts: list[str] = []
    if case.server_args:
        needs.add("server_flags")
    if case.files:
        needs.add("server_dir" if case.files_outside_root else "files")
    if case.security is not None:
        needs.add("security")
    for step in case.walk():
        metadata: list[Mapping[str, str] | None] = []
        if isinstance(step, c.Call):
            method = messages.SERVICE.methods_by_name[step.method]
            elements.add(_method(step.method))
            _fields(method.input_type, step.request, elements)
            if step.expect.response is not None:
                _fields(method.output_type, step.expect.response, elements)
            if _sequence_literals(step.request, _SEQUENCE_KEYS):
                needs.add("log_head")
            metadata += [step.expect.headers, step.expect.trailers]
            texts += _strings(step.request)
        elif isinstance(step, c.Open):
            method = messages.SERVICE.methods_by_name[step.method]
            elements.add(_method(step.method))
            if step.request is not None:
                _fields(method.input_type, step.request, elements)
                if _sequence_literals(step.request, _SEQUENCE_KEYS):
                    needs.add("log_head")
                texts += _strings(step.request)
            metadata.append(step.headers)
        elif isinstance(step, c.Send):
            _fields(bidi_request, step.message, elements)
            if _sequence_literals(step.message, _SEQUENCE_KEYS):
                needs.add("log_head")
            texts += _strings(step.message)
        elif isinstance(step, c.ExpectEvents):
            for wanted in (*(step.events or ()), *(step.unordered or ()), step.each):
                _fields(event, wanted, elements)
                if _sequence_literals(wanted, _SEQUENCE_KEYS):
                    needs.add("log_head")
            for path in (step.distinct, step.ordered_within[0] if step.ordered_within else None):
                if path:
                    _dotted(event, path, elements)
        elif isinstance(step, c.ExpectEnd):
            metadata.append(step.expect.trailers)
        elif isinstance(step, c.Server):
            needs.add("restart")
        elif isinstance(step, c.Discover):
            needs.add("loopback")
            if step.services:
                needs.add("reflection")
            if step.health:
                needs.add("health")
        for block in metadata:
            for key, value in (block or {}).items():
                if key in SEQUENCE_METADATA:
                    elements.add(CAPABILITIES["sequence"].elements[0])
                    if not REFERENCE.search(str(value)):
                        needs.add("log_head")
    names_files = any(marker in text for text in texts for marker in FILE_MARKERS)
    if names_files and "server_dir" not in needs:
        needs.add("files")
    for name in case.requires:
        if kind_of(name) == SCHEMA:
            elements.update(CAPABILITIES[name].elements[:1])
        else:
            needs.add(name)
    return Uses(frozenset(elements), frozenset(needs))


def unexplained(case: c.Case) -> list[str]:
    """The requirements in REASONED the case has but gives no reason for in `requires:`."""
    return sorted(n for n in uses(case).needs if n in REASONED and n not in case.because)


def named(element: str) -> str:
    """The capability an element belongs to, or `schema:<Msg.field>`."""
    for cap in CAPABILITIES.values():
        if element in cap.elements:
            return cap.name
    return "schema:" + element.removeprefix(f"{PACKAGE}.")


def requirements(case: c.Case) -> list[str]:
    """The case's requirements by name, sorted: what the capability table counts it under.

    Elements every schema has (AddTask, Task.title) are no requirement;
    a requirement is what the first release's schema lacks or what is
    not schema at all.
    """
    found = uses(case)
    names = {
        named(e)
        for e in found.elements
        if named(e) in CAPABILITIES or (not V1_0.has(e) and V1_0.knows_method_or_message_of(e))
    }
    return sorted(names | found.needs)


# --- deciding -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ServerProfile:
    """What the server under test offers, and how that was learnt."""

    schema: Schema | None  # None: unknown (no reflection, no --profile)
    services: frozenset[str]  # "reflection", "health"
    behaviours: frozenset[str]  # "planner"
    source: str  # "reflection at 127.0.0.1:5000", "--profile v1.0", ...
    notes: tuple[str, ...] = ()
    # A subscription's headers name the log's head (rigger-head-sequence):
    # what lets a shared server's runs count sequences from where they began.
    head_sequence: bool = False

    def capabilities(self) -> frozenset[str]:
        """Every named capability it has (control needs are the target's business)."""
        schema = self.schema.capabilities() if self.schema is not None else frozenset()
        return schema | self.services | self.behaviours


class Grants:
    """What a target grants of the control needs, and why not where it does not."""

    def __init__(self, refused: Mapping[str, str]) -> None:
        self.refused = dict(refused)

    def why_not(self, need: str) -> str | None:
        """None when the target grants the need, else the reason."""
        return self.refused.get(need)


@dataclasses.dataclass(frozen=True)
class Skip:
    """Why a case does not run here: (requirement, reason) for each unmet one.

    `because` is what the case says it needs each requirement for, where it says.
    """

    reasons: tuple[tuple[str, str], ...]
    because: tuple[tuple[str, str], ...] = ()

    @property
    def text(self) -> str:
        """`needs restart (it stops the server mid-stream): --target ...; needs batches: ...`."""
        said = dict(self.because)
        return "; ".join(
            f"needs {name}" + (f" ({said[name]})" if name in said else "") + f": {why}"
            for name, why in self.reasons
        )

    @property
    def case_reasons(self) -> str:
        """What the case says it needs the missing requirements for, or ""."""
        said = dict(self.because)
        return "; ".join(f"{name}: {said[name]}" for name, _ in self.reasons if name in said)


def unmet(case: c.Case, server: ServerProfile, clients: Schema, grants: Grants) -> Skip | None:
    """Why the case cannot run against this server with these clients, or None."""
    found = uses(case)
    reasons: dict[str, str] = {}
    for element in sorted(found.elements):
        name = named(element)
        if name in reasons:
            continue
        short = element.removeprefix(f"{PACKAGE}.")
        server_schema = server.schema
        if (
            server_schema is not None
            and not server_schema.has(element)
            and server_schema.knows_method_or_message_of(element)
        ):
            reasons[name] = f"the server's schema ({server.source}) has no {short}"
        elif not clients.has(element) and clients.knows_method_or_message_of(element):
            reasons[name] = f"the clients' generated code ({clients.name}) has no {short}"
    for need in sorted(found.needs):
        kind = kind_of(need)
        if kind == SERVICE and need not in server.services:
            reasons[need] = f"the server does not answer {describe(need)} ({server.source})"
        elif kind == BEHAVIOUR and need not in server.behaviours:
            reasons[need] = f"not offered by the server ({server.source})"
        elif kind == CONTROL:
            why = grants.why_not(need)
            if why is not None:
                reasons[need] = why
    if not reasons:
        return None
    because = tuple((n, case.because[n]) for n in sorted(reasons) if n in case.because)
    return Skip(tuple(sorted(reasons.items())), because)


def partition(
    runs: Sequence[Run], server: ServerProfile, clients: Schema, grants: Grants
) -> tuple[list[Run], dict[Run, Skip]]:
    """The runs that can happen here, and the others with why not."""
    verdict: dict[str, Skip | None] = {}
    kept: list[Run] = []
    skipped: dict[Run, Skip] = {}
    for run in runs:
        name = run.case.name
        if name not in verdict:
            verdict[name] = unmet(run.case, server, clients, grants)
        skip = verdict[name]
        if skip is None:
            kept.append(run)
        else:
            skipped[run] = skip
    return kept, skipped


def effective(server: ServerProfile, clients: Schema) -> frozenset[str]:
    """The schema capabilities both sides have: what the runner may judge by.

    Without `sequence` the per-stream checks cannot look at sequences (order,
    gaps): they check what the first release's sidecars could (ids, count).
    """
    offered = clients.capabilities()
    if server.schema is not None:
        offered &= server.schema.capabilities()
    return offered


V1_0 = Schema.of_image("v1.0", RELEASED_IMAGE)
