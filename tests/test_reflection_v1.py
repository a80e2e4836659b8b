"""Server reflection v1 (grpc.reflection.v1) beside v1alpha, for tools that ask only for v1.

The client here speaks only v1: it calls /grpc.reflection.v1.ServerReflection
and reads the descriptors it is sent, as grpcurl and grpc-java's tools do.
(v1's messages are v1alpha's under a new package, byte for byte, so the
v1alpha message classes encode them.)
"""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2 as wire

from testkit.serverproc import ServerProcess

V1 = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"


def ask_v1(address: str, *requests: wire.ServerReflectionRequest, metadata=None):
    with grpc.insecure_channel(address) as channel:
        call = channel.stream_stream(
            V1,
            request_serializer=wire.ServerReflectionRequest.SerializeToString,
            response_deserializer=wire.ServerReflectionResponse.FromString,
        )
        return list(call(iter(requests), timeout=10, metadata=metadata))


def files_of(response: wire.ServerReflectionResponse) -> list[descriptor_pb2.FileDescriptorProto]:
    return [
        descriptor_pb2.FileDescriptorProto.FromString(data)
        for data in response.file_descriptor_response.file_descriptor_proto
    ]


def test_a_v1_client_lists_the_services_the_v1_one_included(shared_server):
    (listing,) = ask_v1(shared_server.address, wire.ServerReflectionRequest(list_services=""))
    names = {service.name for service in listing.list_services_response.service}
    assert {
        "rigger.v1.RiggerService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names


def test_a_v1_client_reads_the_rigger_service_descriptor(shared_server):
    (reply,) = ask_v1(
        shared_server.address,
        wire.ServerReflectionRequest(file_containing_symbol="rigger.v1.RiggerService"),
    )
    (rigger,) = [f for f in files_of(reply) if f.package == "rigger.v1"]
    assert "RiggerService" in [service.name for service in rigger.service]


def test_a_v1_client_describes_the_v1_service_itself_as_grpc_reflection_v1(shared_server):
    (reply,) = ask_v1(
        shared_server.address,
        wire.ServerReflectionRequest(file_containing_symbol="grpc.reflection.v1.ServerReflection"),
    )
    (own,) = files_of(reply)
    assert (own.name, own.package) == ("grpc/reflection/v1/reflection.proto", "grpc.reflection.v1")
    method = own.service[0].method[0]
    assert method.input_type == ".grpc.reflection.v1.ServerReflectionRequest"
    assert not own.options.deprecated


def test_an_unknown_symbol_is_a_not_found_error_response(shared_server):
    (reply,) = ask_v1(
        shared_server.address, wire.ServerReflectionRequest(file_containing_symbol="no.Such")
    )
    assert reply.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


@pytest.mark.parametrize("public", [False, True])
def test_v1_follows_the_token_rules_of_v1alpha(project, public):
    tokens = project.parent / "tokens.txt"
    tokens.write_text("reflection-token\n")
    extra = ("--auth-token-file", str(tokens), *(("--public-health",) if public else ()))
    server = ServerProcess(project, extra_args=extra, token="reflection-token").start()
    try:
        request = wire.ServerReflectionRequest(list_services="")
        if public:
            assert ask_v1(server.address, request)
        else:
            with pytest.raises(grpc.RpcError) as refused:
                ask_v1(server.address, request)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            granted = (("authorization", "Bearer reflection-token"),)
            assert ask_v1(server.address, request, metadata=granted)
    finally:
        server.stop()
