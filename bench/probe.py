"""What a `--target` server offers, read from its server reflection where it has it.

Two things change how the harness drives a server: whether
`UpdateTaskRequest.title` exists (without it the writer only adds tasks) and
whether `SubscribeToTaskEventBatches` exists (without it no batched cell runs).
A server without reflection leaves both unknown; the command line decides then.
"""

from __future__ import annotations

import dataclasses

import grpc
from google.protobuf import descriptor_pool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

SERVICE = "rigger.v1.RiggerService"
_TIMEOUT = 10.0


@dataclasses.dataclass(frozen=True, slots=True)
class Capabilities:
    """What the target has; None where reflection could not tell."""

    reflection: bool
    title_update: bool | None = None
    batches: bool | None = None
    note: str = ""


def capabilities(address: str) -> Capabilities:
    """Ask the server at `address` for its rigger.v1 schema through reflection."""
    with grpc.insecure_channel(address) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=_TIMEOUT)
        except grpc.FutureTimeoutError:
            raise ConnectionError(f"no gRPC server answers at {address}") from None
        database = ProtoReflectionDescriptorDatabase(channel)
        try:
            services = list(database.get_services())
        except grpc.RpcError as exc:
            return Capabilities(False, note=f"no server reflection ({exc.code().name})")
        if SERVICE not in services:
            return Capabilities(True, note=f"reflection lists no {SERVICE}: {services}")
        pool = descriptor_pool.DescriptorPool(database)
        service = pool.FindServiceByName(SERVICE)
        update = pool.FindMessageTypeByName("rigger.v1.UpdateTaskRequest")
        return Capabilities(
            True,
            title_update="title" in update.fields_by_name,
            batches="SubscribeToTaskEventBatches" in service.methods_by_name,
        )
