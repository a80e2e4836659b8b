"""gRPC method handlers by shape: which function serves a call, and wrapping it.

A handler holds its function under one of four attributes, by whether the
client and the server stream. The service builds its handlers from the
descriptor's shapes; the interceptors (calls.py, auth.py) wrap a handler's
function and need a handler of the same shape and serializers around it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

# One handler maker per method shape: (client streams, server streams).
MAKERS: dict[tuple[bool, bool], Callable[..., grpc.RpcMethodHandler[Any, Any]]] = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def behavior(handler: grpc.RpcMethodHandler[Any, Any]) -> Callable[..., Any]:
    """The function that serves `handler`'s calls, whatever its shape."""
    found: Callable[..., Any] | None
    if handler.request_streaming:
        found = handler.stream_stream if handler.response_streaming else handler.stream_unary
    else:
        found = handler.unary_stream if handler.response_streaming else handler.unary_unary
    assert found is not None  # gRPC sets the attribute of the handler's shape
    return found


def same_shape(
    handler: grpc.RpcMethodHandler[Any, Any], serve: Callable[..., Any]
) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of `handler`'s shape and serializers whose calls `serve` answers."""
    make = MAKERS[(handler.request_streaming, handler.response_streaming)]
    return make(
        serve,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
