"""Bearer-token authentication: a token file, rotation on SIGHUP, and the interceptor."""

from __future__ import annotations

import hmac
import logging
import pathlib
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

log = logging.getLogger(__name__)

# Paths that stay open with --public-health, so probes and grpcurl can find
# the server without a token.
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class TokenFileError(Exception):
    """The token file is missing, unreadable or holds no token."""


def read_tokens(path: pathlib.Path) -> tuple[bytes, ...]:
    """Read one token per line; blank lines and `#` comments are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenFileError(f"cannot read token file {path}: {exc}") from None
    tokens = tuple(
        line.strip().encode()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    if not tokens:
        raise TokenFileError(f"token file {path} holds no token")
    return tokens


class TokenAuth:
    """The accepted tokens. `reload()` swaps them atomically; calls in flight keep going."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self._tokens = read_tokens(path)

    def reload(self) -> None:
        """Re-read the file. On failure, keep the current tokens and say why (never the tokens)."""
        try:
            self._tokens = read_tokens(self.path)
        except TokenFileError as exc:
            log.error("token rotation failed, keeping the current tokens: %s", exc)
            return
        log.info("token file reloaded: %d token(s)", len(self._tokens))

    def accepts(self, header: str | bytes | None) -> bool:
        """True if `header` is `Bearer <token>` for an accepted token, compared in constant time."""
        if header is None:
            return False
        value = header.encode() if isinstance(header, str) else header
        scheme, _, presented = value.partition(b" ")
        if scheme.lower() != b"bearer" or not presented:
            return False
        # Compare with every token, without stopping early, so timing does
        # not reveal which one (or whether any prefix) matched.
        matched = False
        for token in self._tokens:
            matched |= hmac.compare_digest(presented.strip(), token)
        return matched


def _deny(
    handler: grpc.RpcMethodHandler[Any, Any], message: str
) -> grpc.RpcMethodHandler[Any, Any]:
    async def abort(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort)
    return grpc.unary_unary_rpc_method_handler(abort)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Requires `authorization: Bearer <token>` on every call, streams included."""

    def __init__(self, auth: TokenAuth, *, public_health: bool) -> None:
        self.auth = auth
        self.public_health = public_health

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """Pass authenticated calls on; answer the rest with UNAUTHENTICATED."""
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or (self.public_health and method.startswith(PUBLIC_PREFIXES)):
            return handler
        header = next(
            (v for k, v in handler_call_details.invocation_metadata or () if k == "authorization"),
            None,
        )
        if header is None:
            return _deny(handler, "missing `authorization: Bearer <token>` metadata")
        if not self.auth.accepts(header):
            return _deny(handler, "invalid bearer token")
        return handler
