"""The servicer's method table and the domain's enums follow the rigger.v1 descriptor."""

from __future__ import annotations

import types
from typing import Any

import grpc
import pytest
from rigger.v1 import rigger_pb2 as pb
from rigger_server import service
from rigger_server.domain import EventType, TaskStatus

METHODS = list(pb.DESCRIPTOR.services_by_name["RiggerService"].methods)


class _Details(grpc.HandlerCallDetails):
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


def _servicer() -> Any:
    async def behaviour(*_: object) -> None:
        return None

    return types.SimpleNamespace(**{method.name: behaviour for method in METHODS})


@pytest.mark.parametrize("method", METHODS, ids=lambda method: method.name)
def test_every_method_of_the_service_is_served_with_its_shape_and_request_type(method):
    handler = service.rpc_handler(_servicer()).service(
        _Details(f"/{method.containing_service.full_name}/{method.name}")
    )
    assert handler is not None
    assert (handler.request_streaming, handler.response_streaming) == (
        method.client_streaming,
        method.server_streaming,
    )
    request = getattr(pb, method.input_type.name)
    assert handler.request_deserializer(request().SerializeToString()) == request()
    if method.server_streaming:
        # Streams send each event's stored bytes as they are.
        assert handler.response_serializer is None
    else:
        response = getattr(pb, method.output_type.name)
        assert handler.response_serializer(response()) == b""


def test_a_servicer_missing_a_method_of_the_service_is_refused_at_once():
    servicer = _servicer()
    del servicer.GetTask
    with pytest.raises(AttributeError, match="GetTask"):
        service.rpc_handler(servicer)


@pytest.mark.parametrize(
    ("domain", "wire", "prefix"),
    [
        (TaskStatus, pb.TaskStatus, "TASK_STATUS_"),
        (EventType, pb.TaskEventType, "TASK_EVENT_TYPE_"),
    ],
    ids=["TaskStatus", "TaskEventType"],
)
def test_every_domain_enum_value_has_the_name_and_number_of_the_proto(domain, wire, prefix):
    assert {f"{prefix}{member.name}": int(member) for member in domain} == dict(wire.items())


def test_a_status_is_printed_by_its_contract_name():
    for status in TaskStatus:
        assert pb.TaskStatus.Value(status.contract_name) == status
