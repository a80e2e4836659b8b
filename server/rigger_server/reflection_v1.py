"""Server reflection v1 (grpc.reflection.v1), beside the v1alpha that grpcio-reflection serves.

grpcio-reflection (1.85) ships only grpc.reflection.v1alpha, while newer
tools (and grpc-java, which deprecated v1alpha) ask for v1 first or only.
The v1 protocol is the v1alpha one under a new package name: the same
messages, field for field, so the same bytes on the wire. So the library's
own servicer answers both: v1 is registered under its own service name with
v1alpha's (de)serializers, and v1's file descriptor, derived here from
v1alpha's by renaming the package, is added to the descriptor pool so a v1
client can list and describe the v1 service like any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

PACKAGE = "grpc.reflection.v1"
FILE_NAME = "grpc/reflection/v1/reflection.proto"
SERVICE_NAME = f"{PACKAGE}.ServerReflection"
_ALPHA = f".{reflection_pb2.DESCRIPTOR.package}."


def _v1_file() -> FileDescriptor:
    pool = descriptor_pool.Default()
    try:
        # Registered already (by a later grpcio-reflection, or an import of ours).
        return pool.FindFileContainingSymbol(SERVICE_NAME)
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.name = FILE_NAME
    proto.package = PACKAGE
    # As grpc-proto's v1 file says them; v1 is not deprecated.
    proto.options.Clear()
    proto.options.java_package = "io.grpc.reflection.v1"
    proto.options.java_outer_classname = "ServerReflectionProto"
    proto.options.java_multiple_files = True
    proto.options.go_package = "google.golang.org/grpc/reflection/grpc_reflection_v1"
    for message in proto.message_type:
        for field in message.field:
            if field.type_name:
                field.type_name = _renamed(field.type_name)
    for service in proto.service:
        for method in service.method:
            method.input_type = _renamed(method.input_type)
            method.output_type = _renamed(method.output_type)
    pool.AddSerializedFile(proto.SerializeToString())
    return pool.FindFileByName(FILE_NAME)


def _renamed(type_name: str) -> str:
    if type_name.startswith(_ALPHA):
        return f".{PACKAGE}.{type_name.removeprefix(_ALPHA)}"
    return type_name


DESCRIPTOR = _v1_file()


def add_to_server(servicer: Any, server: grpc.aio.Server) -> None:
    """Serve `servicer` (grpcio-reflection's v1alpha servicer) as grpc.reflection.v1 too."""
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE_NAME, {"ServerReflectionInfo": handler}),)
    )


def enable(service_names: Sequence[str], server: grpc.aio.Server) -> None:
    """Serve reflection for `service_names` as grpc.reflection.v1alpha and v1, one servicer."""
    reflector = reflection.aio.ReflectionServicer(tuple(service_names))
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(  # type: ignore[no-untyped-call]
        reflector, server
    )
    add_to_server(reflector, server)
