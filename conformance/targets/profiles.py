"""A server's profile: which rigger.v1 methods and fields it has, and which services.

The profile is probed where the server allows it: server reflection
(v1alpha, as grpcurl uses) gives its schema, the health service and
reflection themselves are dialled, and one call with an empty request tells
whether the planner is implemented. Where reflection is missing, `--profile`
names the schema instead: `v1.0` (the first release,
proto/released/rigger-v1.0.0.binpb: no sequence, no version, no batches, no
after_sequence, no expected_version, no title update), `head` (this
checkout's proto), or a path to a buf image / FileDescriptorSet
(`buf build -o my.binpb`).
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from conformance.targets.capabilities import HEAD, SERVICE_NAME, V1_0, Schema, ServerProfile
from conformance.targets.capabilities import named as named_element
from conformance.targets.target import Target

TIMEOUT_S = 10.0
BUILTIN: dict[str, Schema] = {"v1.0": V1_0, "head": HEAD}
# The first release implemented no planner; `head` and images leave it to the probe.
BUILTIN_BEHAVIOURS: dict[str, frozenset[str]] = {"v1.0": frozenset()}
PLANNER_PROBE = "GenerateTasksFromPRD"
HEAD_SEQUENCE = "rigger-head-sequence"
HEAD_TIMEOUT_S = 5.0


class ProfileError(ValueError):
    """The profile cannot be learnt or loaded; the message says what to do."""


def schema_named(name: str) -> Schema:
    """A built-in schema (`v1.0`, `head`) or one read from a buf image file."""
    if name in BUILTIN:
        return BUILTIN[name]
    path = pathlib.Path(name)
    if not path.is_file():
        raise ProfileError(
            f"--profile {name}: neither a built-in profile ({', '.join(BUILTIN)}) nor a file"
        )
    try:
        return Schema.of_image(path.name, path)
    except Exception as exc:
        raise ProfileError(
            f"--profile {name}: not a buf image with rigger/v1/rigger.proto: {exc}"
        ) from None


class _Metadata(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):  # type: ignore[misc]
    """Adds `authorization: Bearer` to every call the probe makes (reflection included)."""

    def __init__(self, token: str) -> None:
        self.pair = ("authorization", f"Bearer {token}")

    def _details(self, details: Any) -> Any:
        metadata = [*(details.metadata or ()), self.pair]
        return details._replace(metadata=metadata)

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_stream(
        self, continuation: Callable[..., Any], details: Any, requests: Any
    ) -> Any:
        return continuation(self._details(details), requests)


def open_channel(
    address: str,
    credentials: grpc.ChannelCredentials | None,
    token: str | None,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.Channel:
    """A blocking channel to the server, sending the token with every call."""
    channel = (
        grpc.secure_channel(address, credentials, options=options)
        if credentials is not None
        else grpc.insecure_channel(address, options=options)
    )
    if token:
        return grpc.intercept_channel(channel, _Metadata(token))
    return channel


def probe(
    address: str,
    credentials: grpc.ChannelCredentials | None = None,
    token: str | None = None,
    *,
    schema: Schema | None = None,
    schema_source: str = "",
    shared: bool = False,
) -> ServerProfile:
    """Ask the server at `address` what it offers.

    `schema` (from --profile) replaces what reflection would say; services
    and the planner are probed either way. For a `shared` server (`--target`),
    also whether a subscription names the log's head.
    """
    notes: list[str] = []
    with open_channel(address, credentials, token) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=TIMEOUT_S)
        except grpc.FutureTimeoutError:
            raise ProfileError(
                f"no gRPC server answers at {address} within {TIMEOUT_S:.0f} s (is it running? "
                "with TLS: do --target-ca, --target-cert and --target-key match it?)"
            ) from None
        services: set[str] = set()
        if _health(channel, notes):
            services.add("health")
        reflected, listed = _reflection(channel, notes)
        if listed:
            services.add("reflection")
        source = schema_source
        if schema is None:
            if reflected is None:
                raise ProfileError(
                    f"{address}: cannot learn the server's schema ({'; '.join(notes)}); "
                    "name it with --profile v1.0, --profile head or --profile FILE.binpb"
                )
            schema, source = reflected, f"reflection at {address}"
        behaviours = BUILTIN_BEHAVIOURS.get(schema.name)
        if behaviours is None:
            behaviours = frozenset({"planner"}) if _planner(channel, notes) else frozenset()
        announced = False
        if shared:
            # Only a shared server's runs need it (the others start at 0), and a
            # server that sends headers only with its first event makes this wait.
            try:
                announced = head_sequence(channel, HEAD_TIMEOUT_S) is not None
            except grpc.RpcError as exc:
                notes.append(f"SubscribeToTaskEvents: {exc.code().name}")
            if not announced:
                notes.append(f"a subscription's headers name no {HEAD_SEQUENCE}")
    return ServerProfile(
        schema, frozenset(services), behaviours, source, tuple(notes), head_sequence=announced
    )


def head_sequence(channel: grpc.Channel, timeout: float = TIMEOUT_S) -> int | None:
    """The log's head as a new subscription's headers name it, or None if they do not.

    Opens SubscribeToTaskEvents (live only: it replays nothing), reads the
    response headers and cancels. RpcError when the subscription fails.
    """
    subscribe = channel.unary_stream(
        f"/{SERVICE_NAME}/SubscribeToTaskEvents",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    call = subscribe(b"", timeout=timeout)
    try:
        headers = dict(call.initial_metadata() or ())
        if not headers:
            # A trailers-only answer (the subscription was refused) has no headers.
            call.code()
            for _ in call:
                pass
    finally:
        call.cancel()
    value = headers.get(HEAD_SEQUENCE)
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _health(channel: grpc.Channel, notes: list[str]) -> bool:
    # types-grpcio-health-checking declares HealthStub without its methods.
    stub: Any = health_pb2_grpc.HealthStub(channel)
    try:
        stub.Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT_S)
    except grpc.RpcError as exc:
        notes.append(f"health: {exc.code().name}")
        return False
    return True


def _reflection(channel: grpc.Channel, notes: list[str]) -> tuple[Schema | None, bool]:
    """(the schema reflection describes, whether reflection answered at all)."""
    database = ProtoReflectionDescriptorDatabase(channel)
    try:
        listed = set(database.get_services())
    except grpc.RpcError as exc:
        notes.append(f"no server reflection ({exc.code().name})")
        return None, False
    if SERVICE_NAME not in listed:
        notes.append(f"reflection lists no {SERVICE_NAME} (only {sorted(listed)})")
        return None, True
    try:
        pool = descriptor_pool.DescriptorPool(database)
        service = pool.FindServiceByName(SERVICE_NAME)
    except (KeyError, TypeError, grpc.RpcError) as exc:
        notes.append(f"reflection cannot resolve {SERVICE_NAME}: {exc}")
        return None, True
    return Schema.of_file("reflection", service.file), True


def _planner(channel: grpc.Channel, notes: list[str]) -> bool:
    # An empty request has no PRD to plan from: a planner refuses it
    # (INVALID_ARGUMENT, NOT_FOUND), a server without one says UNIMPLEMENTED.
    call = channel.unary_unary(
        f"/{SERVICE_NAME}/{PLANNER_PROBE}",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    try:
        call(b"", timeout=TIMEOUT_S)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
            notes.append(f"{PLANNER_PROBE} answers UNIMPLEMENTED: no planner")
            return False
    return True


# What a server of this checkout offers besides its schema's named capabilities.
FULL_SERVER = frozenset({"health", "reflection", "planner"})


def lacks(profile: ServerProfile) -> list[str]:
    """What this checkout's server has and `profile`'s lacks: named capabilities, services,
    the planner, then every other method and field of the contract as `schema:<element>`."""
    named = sorted((HEAD.capabilities() | FULL_SERVER) - profile.capabilities())
    if profile.schema is None:
        return named
    elements = sorted(
        named_element(e)
        for e in HEAD.elements - profile.schema.elements
        if named_element(e).startswith("schema:")
    )
    return named + elements


def describe(profile: ServerProfile, clients: Schema) -> Sequence[str]:
    """Lines for the terminal: where the profile came from and what it lacks."""
    head = HEAD.capabilities()
    schema = profile.schema.capabilities() if profile.schema is not None else frozenset()
    missing = sorted(head - schema)
    elements = [e for e in lacks(profile) if e.startswith("schema:")]
    lines = [
        f"server profile: {profile.source}; "
        + (f"lacks {', '.join(missing)}" if missing else "every schema capability")
        + f"; services: {', '.join(sorted(profile.services)) or 'none'}"
        + f"; planner: {'yes' if 'planner' in profile.behaviours else 'no'}"
        + (
            f"; its schema lacks {len(elements)} other fields or methods of this checkout's "
            "contract (report.json: target.profile.lacks)"
            if elements
            else ""
        )
    ]
    if clients.name != HEAD.name:
        lacking = sorted(head - clients.capabilities())
        lines.append(
            f"clients generated from {clients.name}: lack {', '.join(lacking) or 'nothing'}"
        )
    return lines


def learn(
    target: Target, profile: str | None, server_args: tuple[str, ...], workdir: pathlib.Path
) -> ServerProfile:
    """The target's profile: probed (starting one server where the runner starts them).

    `profile` (--profile) names the schema instead of reflection.
    ProfileError when the server cannot be started or asked.
    """
    schema = schema_named(profile) if profile else None
    source = f"--profile {profile}" if profile else ""
    security = target.security
    if target.kind == "remote":
        return probe(
            target.address,
            security.channel_credentials(),
            security.token,
            schema=schema,
            schema_source=source,
            shared=True,
        )
    root = workdir / "probe" / "project"
    root.mkdir(parents=True)
    server = target.server(
        root,
        db=workdir / "probe" / "db" / "tasks.db",
        extra_args=server_args,
        credentials=None,
        token=None,
    )
    server.log_path = workdir / "probe" / "server.log"
    try:
        server.start()
    except RuntimeError as exc:
        raise ProfileError(f"the server did not start: {exc}") from None
    try:
        return probe(
            getattr(server, "dial", server.address),
            security.channel_credentials(),
            security.token,
            schema=schema,
            schema_source=source,
        )
    finally:
        server.stop()


def report(target: Target, profile: ServerProfile, clients: Schema) -> dict[str, object]:
    """What report.json says about the server under test and the clients."""
    return {
        "kind": target.kind,
        "description": target.description,
        "profile": {
            "source": profile.source,
            "capabilities": sorted(profile.capabilities()),
            # What this checkout's contract and a full server have and this one lacks.
            "lacks": lacks(profile),
            "notes": list(profile.notes),
        },
        "clients": clients.name,
    }
