"""Discovery, checked by the runner itself: server reflection and the standard health service.

These belong to the server, not to a client: no executor is involved, so a
`discover` step's outcome is the same whichever languages play the run. The
runner dials each address given (so `localhost`, `127.0.0.1` and `[::1]`
reaching the server is checked too), lists the services reflection offers,
resolves RiggerService through reflection as grpcurl would (no .proto at
hand), and asks the health service about each name.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

TIMEOUT_S = 10.0


def target(host: str, port: int) -> str:
    """`host:port`, with an IPv6 literal in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check(
    address: str,
    credentials: grpc.ChannelCredentials | None,
    service: ServiceDescriptor,
    services: Sequence[str],
    health: Mapping[str, str],
) -> list[str]:
    """Every way the server at `address` fails the discovery promises (blocking)."""
    problems: list[str] = []
    # A plain connect first: where nothing listens it fails at once, where
    # a gRPC channel would keep retrying until its deadline.
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=TIMEOUT_S).close()
    except OSError as exc:
        return [f"{address}: cannot connect: {exc}"]
    channel = (
        grpc.secure_channel(address, credentials)
        if credentials is not None
        else grpc.insecure_channel(address)
    )
    with channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=TIMEOUT_S)
        except grpc.FutureTimeoutError:
            return [f"{address}: cannot connect within {TIMEOUT_S:.0f} s"]
        if services:
            problems += _reflection(channel, address, service, services)
        stub = health_pb2_grpc.HealthStub(channel)
        for name, wanted in health.items():
            shown = name or '"" (the whole server)'
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=TIMEOUT_S)
            except grpc.RpcError as exc:
                problems.append(f"{address}: health of {shown}: {exc.code().name}: {exc.details()}")
                continue
            status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            if status != wanted:
                problems.append(f"{address}: health of {shown} is {status}, expected {wanted}")
    return problems


def _reflection(
    channel: grpc.Channel, address: str, service: ServiceDescriptor, services: Sequence[str]
) -> list[str]:
    database = ProtoReflectionDescriptorDatabase(channel)
    try:
        listed = set(database.get_services())
    except grpc.RpcError as exc:
        return [f"{address}: reflection: {exc.code().name}: {exc.details()}"]
    missing = [name for name in services if name not in listed]
    if missing:
        return [f"{address}: reflection does not list {missing} (it lists {sorted(listed)})"]
    if service.full_name not in services:
        return []
    # What grpcurl does next: resolve the service from the descriptors the
    # server sends, then every method's request and response types.
    try:
        served = descriptor_pool.DescriptorPool(database).FindServiceByName(service.full_name)
    except (KeyError, TypeError, grpc.RpcError) as exc:
        return [f"{address}: reflection cannot resolve {service.full_name}: {exc}"]
    ours = {m.name: (m.input_type.full_name, m.output_type.full_name) for m in service.methods}
    theirs = {m.name: (m.input_type.full_name, m.output_type.full_name) for m in served.methods}
    if ours != theirs:
        return [f"{address}: reflection describes {service.full_name} as {theirs}, not {ours}"]
    return []
