"""Bearer-token authentication: a token file, rotation on SIGHUP, and the interceptor.

A token is checked when a call starts, and again for every stream still open
when the tokens rotate: a stream whose token is no longer accepted is ended
with UNAUTHENTICATED, so a revoked token keeps no access through a stream it
opened before.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import inspect
import logging
import pathlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from rigger_server import handlers

log = logging.getLogger(__name__)

# Paths that stay open with --public-health, so probes and grpcurl can find
# the server without a token.
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


# The service ends its own streams on revocation, naming the last sequence
# sent; the interceptor ends every other stream (health Watch, reflection).
SELF_REVOKING_PREFIX = "/rigger.v1.RiggerService/"
REVOKED_MESSAGE = "the token was revoked"


class TokenFileError(Exception):
    """The token file is missing, unreadable or holds no token."""


class Revoked(Exception):
    """The token a call was made with is no longer accepted."""


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
    """The accepted tokens. `reload()` swaps them and revokes what they no longer allow."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self._tokens = read_tokens(path)
        # Open calls holding a token: (authorization header, called on revocation).
        self._holders: dict[object, tuple[str | bytes | None, Callable[[], None]]] = {}

    def reload(self) -> None:
        """Re-read the file. On failure, keep the current tokens and say why (never the tokens).

        Every holder whose token the new file no longer accepts is told, once.
        """
        try:
            self._tokens = read_tokens(self.path)
        except TokenFileError as exc:
            log.error("token rotation failed, keeping the current tokens: %s", exc)
            return
        revoked = [key for key, (header, _) in self._holders.items() if not self.accepts(header)]
        for key in revoked:
            _, on_revoked = self._holders.pop(key)
            on_revoked()
        log.info(
            "token file reloaded: %d token(s); %d open stream(s) ended as revoked",
            len(self._tokens),
            len(revoked),
        )

    def hold(
        self, header: str | bytes | None, on_revoked: Callable[[], None]
    ) -> Callable[[], None]:
        """Call `on_revoked` once when a reload stops accepting `header`; returns the release.

        If `header` is already not accepted (a rotation came between the
        call's check and this), `on_revoked` is called at once.
        """
        if not self.accepts(header):
            on_revoked()
            return lambda: None
        key = object()
        self._holders[key] = (header, on_revoked)

        def release() -> None:
            self._holders.pop(key, None)

        return release

    @property
    def holders(self) -> int:
        """How many open calls hold a token (for tests and the log)."""
        return len(self._holders)

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


def authorization(metadata: Any) -> str | bytes | None:
    """The `authorization` header among a call's metadata, or None."""
    return next((v for k, v in metadata or () if k == "authorization"), None)


def _deny(
    handler: grpc.RpcMethodHandler[Any, Any], message: str
) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler ending the call with UNAUTHENTICATED as soon as its headers arrived.

    gRPC runs a unary-request handler only once the request message arrived,
    so a caller without a token that sends headers and never a body would
    hold the call (and its memory) for as long as it liked. A
    request-streaming handler runs at once and never reads the body.
    """

    async def abort(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    if handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort)
    return grpc.stream_unary_rpc_method_handler(abort)


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
        header = authorization(handler_call_details.invocation_metadata)
        if header is None:
            return _deny(handler, "missing `authorization: Bearer <token>` metadata")
        if not self.auth.accepts(header):
            return _deny(handler, "invalid bearer token")
        if handler.response_streaming and not method.startswith(SELF_REVOKING_PREFIX):
            return _revocable(handler, self.auth, header)
        return handler


def _revocable(
    handler: grpc.RpcMethodHandler[Any, Any], auth: TokenAuth, header: str | bytes
) -> grpc.RpcMethodHandler[Any, Any]:
    """The same streaming handler, ended with UNAUTHENTICATED once its token is revoked."""
    behavior = handlers.behavior(handler)
    if inspect.isasyncgenfunction(behavior):

        async def generator(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            revoked = asyncio.Event()
            release = auth.hold(header, revoked.set)
            responses: AsyncGenerator[Any, None] = behavior(request, context)
            waiting = asyncio.ensure_future(revoked.wait())
            try:
                while True:
                    following = asyncio.ensure_future(anext(responses))
                    await asyncio.wait({following, waiting}, return_when=asyncio.FIRST_COMPLETED)
                    if not following.done():
                        following.cancel()
                        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                            await following
                        await context.abort(grpc.StatusCode.UNAUTHENTICATED, REVOKED_MESSAGE)
                    try:
                        yield following.result()
                    except StopAsyncIteration:
                        return
            finally:
                waiting.cancel()
                release()
                await responses.aclose()

        guarded: Callable[..., Any] = generator
    else:

        async def coroutine(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
            # The headers go out before the handler writes anything. gRPC
            # counts them sent only once a write returns; a handler cancelled
            # in its first write (the revocation below) would leave them
            # counted unsent though they are on their way, and the abort
            # would send them again: gRPC refuses that whole batch
            # (TOO_MANY_OPERATIONS), so no status ever went out and the
            # client waited forever. The handler must not send headers itself.
            await context.send_initial_metadata(())
            revoked = asyncio.Event()
            release = auth.hold(header, revoked.set)
            serving = asyncio.ensure_future(behavior(request, context))
            waiting = asyncio.ensure_future(revoked.wait())
            try:
                await asyncio.wait({serving, waiting}, return_when=asyncio.FIRST_COMPLETED)
                if not serving.done():
                    serving.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await serving
                    await context.abort(grpc.StatusCode.UNAUTHENTICATED, REVOKED_MESSAGE)
                serving.result()
            finally:
                waiting.cancel()
                release()

        guarded = coroutine
    return handlers.same_shape(handler, guarded)
