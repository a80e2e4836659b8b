"""Every call observed: its metrics, and with `--log-format json` its log record.

One interceptor, outermost, wraps whatever handler answers a call (the
service's, health, reflection, or the auth interceptor's refusal), so every
call is counted by method and status code, timed, and (when asked) logged
with its peer and, for writes, the sequences it committed. A call to a
method the server does not have is counted as service and method "unknown",
whatever its path: no client can create a series.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from rigger_server import handlers, metrics
from rigger_server.writer import COMMITTED, Committed

log = logging.getLogger("rigger_server.calls")

# How much of an unknown method's path a log record quotes.
_PATH_CHARS = 200
_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


def code_name(code: Any) -> str:
    """The name of a status code as the servicer context reports it (None: OK)."""
    if code is None:
        return "OK"
    if isinstance(code, grpc.StatusCode):
        return code.name
    return _CODE_NAMES.get(code, "UNKNOWN")


class _Call:
    """One call being observed: when it started, and how it ended."""

    __slots__ = ("committed", "context", "failed", "started")

    def __init__(self, context: grpc.aio.ServicerContext[Any, Any], log_calls: bool) -> None:
        self.context = context
        self.started = time.perf_counter()
        self.failed: BaseException | None = None
        self.committed: Committed | None = None
        if log_calls:
            # Not reset afterwards: each call runs in a task, and so in a
            # context, of its own.
            self.committed = Committed()
            COMMITTED.set(self.committed)

    def code(self) -> str:
        exc = self.failed
        if isinstance(exc, asyncio.CancelledError):
            remaining = self.context.time_remaining()
            return "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"
        code = code_name(self.context.code())
        if exc is not None and not isinstance(exc, grpc.aio.AbortError) and code == "OK":
            return "UNKNOWN"  # what gRPC answers an exception with
        return code


class CallObserver(grpc.aio.ServerInterceptor):
    """Counts and times every call; with `log_calls`, logs one record for each."""

    def __init__(self, *, log_calls: bool = False) -> None:
        self.log_calls = log_calls

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """Wrap the call's handler so that its end is counted, timed and logged."""
        handler = await continuation(handler_call_details)
        path = handler_call_details.method
        service, method = metrics.method_labels(path)
        if handler is None:
            # gRPC answers UNIMPLEMENTED; no handler runs, so there is no duration.
            metrics.call_ended(service, method, "UNIMPLEMENTED", None)
            if self.log_calls:
                log.info(
                    "unknown method UNIMPLEMENTED",
                    extra={"method": metrics.UNKNOWN, "path": path[:_PATH_CHARS]},
                )
            return None
        return self._observed(handler, path, service, method)

    def _ended(self, call: _Call, path: str, service: str, method: str) -> None:
        seconds = time.perf_counter() - call.started
        code = call.code()
        metrics.call_ended(service, method, code, seconds)
        if not self.log_calls:
            return
        fields: dict[str, Any] = {
            "method": path,
            "code": code,
            "duration_ms": round(seconds * 1000, 3),
            "peer": call.context.peer(),
        }
        committed = call.committed
        if committed is not None and committed.count:
            fields["committed"] = {
                "first": committed.first,
                "last": committed.last,
                "events": committed.count,
            }
        log.info("%s %s %.1f ms", path, code, seconds * 1000, extra=fields)

    def _observed(
        self, handler: grpc.RpcMethodHandler[Any, Any], path: str, service: str, method: str
    ) -> grpc.RpcMethodHandler[Any, Any]:
        behavior = handlers.behavior(handler)
        log_calls = self.log_calls
        wrapped: Callable[..., Any]
        if inspect.isasyncgenfunction(behavior):
            streaming: Callable[..., AsyncGenerator[Any, None]] = behavior

            async def responses(
                request: Any, context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                call = _Call(context, log_calls)
                try:
                    async with contextlib.aclosing(streaming(request, context)) as inner:
                        async for response in inner:
                            yield response
                except BaseException as exc:
                    call.failed = exc
                    raise
                finally:
                    self._ended(call, path, service, method)

            wrapped = responses
        elif inspect.iscoroutinefunction(behavior):
            awaited: Callable[..., Awaitable[Any]] = behavior

            async def answer(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                call = _Call(context, log_calls)
                try:
                    return await awaited(request, context)
                except BaseException as exc:
                    call.failed = exc
                    raise
                finally:
                    self._ended(call, path, service, method)

            wrapped = answer
        else:
            return handler  # a synchronous handler: this server registers none
        return handlers.same_shape(handler, wrapped)
