"""Open a grpc.aio channel to a Rigger server: plaintext or (m)TLS, with an optional token."""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc
from grpc import aio
from rigger.v1 import rigger_pb2_grpc

if TYPE_CHECKING:
    from rigger.v1.rigger_pb2_grpc import RiggerServiceAsyncStub

DEFAULT_ADDRESS = "localhost:50051"

# A subscription can sit idle for hours. Keepalive pings notice a server
# that vanished without closing the connection (host down, NAT entry dropped),
# so the watch can reconnect instead of waiting forever. Pinging must go on
# while no data flows (max_pings_without_data 0); the Rigger server accepts
# pings every 10 s or more, and a server with gRPC's default 5 min policy
# answers too_many_pings with GOAWAY, which the watch survives by resuming.
# grpcio 1.85 drops an unanswered ping after grpc.http2.ping_timeout_ms
# (default 60 s) whatever keepalive_timeout_ms says, so both are set.
#
# gRPC's own reconnect backoff grows to 2 min, so after a long outage a
# restarted server would go unnoticed that long; capping it at 5 s keeps the
# watch's reconnect delays (0.1 s to 5 s) meaningful.
CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.ping_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 5_000),
)


def connect(
    address: str = DEFAULT_ADDRESS,
    *,
    ca_file: str | pathlib.Path | None = None,
    cert_file: str | pathlib.Path | None = None,
    key_file: str | pathlib.Path | None = None,
    token: str | None = None,
) -> aio.Channel:
    """Open a channel to `address`.

    TLS is used when `ca_file`, `cert_file` or `key_file` is given (a client
    certificate and key together make it mutual TLS); without a CA file the
    system roots verify the server. Otherwise the channel is plaintext.
    `token`, if given, is sent as `authorization: Bearer <token>` on every call.
    """
    if (cert_file is None) != (key_file is None):
        raise ValueError("cert_file and key_file must be given together")
    token = token.strip() if token else None
    if ca_file is None and cert_file is None:
        interceptors = _bearer_interceptors(token) if token else None
        return aio.insecure_channel(address, options=CHANNEL_OPTIONS, interceptors=interceptors)

    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(ca_file),
        private_key=_read(key_file),
        certificate_chain=_read(cert_file),
    )
    if token:
        credentials = grpc.composite_channel_credentials(
            credentials, grpc.access_token_call_credentials(token)
        )
    return aio.secure_channel(address, credentials, options=CHANNEL_OPTIONS)


def stub(channel: aio.Channel) -> RiggerServiceAsyncStub:
    """The generated async stub for `channel`."""
    return rigger_pb2_grpc.RiggerServiceStub(channel)


def _read(path: str | pathlib.Path | None) -> bytes | None:
    return None if path is None else pathlib.Path(path).read_bytes()


# Call credentials are only ever sent over secure channels, so plaintext
# channels add the header with interceptors. grpc.aio files each interceptor
# under the first of the four kinds it matches, so streams need their own.


class _Token:
    def __init__(self, header: str) -> None:
        self.header = header

    def details(self, details: aio.ClientCallDetails) -> aio.ClientCallDetails:
        metadata = aio.Metadata(*(details.metadata or ()))
        if not metadata.get_all("authorization"):  # a value set on the call itself wins
            metadata.add("authorization", self.header)
        return aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )


class _UnaryUnaryToken(_Token, aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(self.details(client_call_details), request)


class _UnaryStreamToken(_Token, aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(self.details(client_call_details), request)


class _StreamUnaryToken(_Token, aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(self.details(client_call_details), request_iterator)


class _StreamStreamToken(_Token, aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(self.details(client_call_details), request_iterator)


def _bearer_interceptors(token: str) -> list[aio.ClientInterceptor]:
    header = f"Bearer {token}"
    return [
        _UnaryUnaryToken(header),
        _UnaryStreamToken(header),
        _StreamUnaryToken(header),
        _StreamStreamToken(header),
    ]
