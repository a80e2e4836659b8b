"""A resuming watch on Rigger's event streams: every event once, in order, across reconnects.

It reads SubscribeToTaskEventBatches, which sends every queued event in one
message, and yields the events one by one; from a server without that method
(UNIMPLEMENTED) it reads SubscribeToTaskEvents instead. `batched=False` reads
only SubscribeToTaskEvents.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import grpc
from rigger.v1 import rigger_pb2 as pb

from rigger_client.backoff import Backoff

if TYPE_CHECKING:
    from rigger.v1.rigger_pb2_grpc import RiggerServiceAsyncStub

# The endings worth another subscription, the same in every Rigger client:
# the table in clients/README.md ("Reconnecting"), which the tests check this
# set against. OK is a stream the server ended; the server going away or
# restarting is UNAVAILABLE (also what a refused connection reports); a
# lagging or one-too-many subscriber is cut off with RESOURCE_EXHAUSTED; and
# transport resets surface as INTERNAL, UNKNOWN or a remote CANCELLED.
# Everything else (INVALID_ARGUMENT, UNAUTHENTICATED, PERMISSION_DENIED, ...)
# would fail the same way again, so it is raised. Cancelling the watch itself
# raises CancelledError in the caller, never a retry.
RETRYABLE = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
    }
)

HEAD_SEQUENCE_KEY = "rigger-head-sequence"

OnSubscribed = Callable[[int | None], None]
"""Called with the after_sequence subscribed with (None: live only)."""

OnRetry = Callable[[grpc.StatusCode, str, float], None]
"""Called with the status code (OK for a stream the server ended), its details, and the delay."""

OnFallback = Callable[[str], None]
"""Called with the server's details when it answered UNIMPLEMENTED for the batched stream."""

OnHead = Callable[[int], None]
"""Called with the head sequence a live-only watch resumes after until its first event."""


def retrying_message(code: grpc.StatusCode, details: str, delay: float) -> str:
    """What a watcher says when its stream ended and it reconnects after `delay` seconds."""
    return f"stream ended ({code.name}: {details}); reconnecting in {delay:.2f}s"


def fell_back_message(details: str) -> str:
    """What a watcher says when it falls back to the plain stream.

    The sidecars and `rig watch` say it in the same words, so that one check
    (conformance/skew/sidecars.py) reads all four.
    """
    return (
        f"the server has no SubscribeToTaskEventBatches (UNIMPLEMENTED: {details}); "
        "reading SubscribeToTaskEvents"
    )


async def watch_events(
    stub: RiggerServiceAsyncStub,
    request: pb.SubscribeToTaskEventsRequest,
    *,
    on_subscribed: OnSubscribed | None = None,
    on_retry: OnRetry | None = None,
    initial_backoff: float = 0.1,
    max_backoff: float = 5.0,
    backoff_multiplier: float = 2.0,
    jitter: float = 0.2,
    batched: bool = True,
    on_fallback: OnFallback | None = None,
    on_head: OnHead | None = None,
) -> AsyncGenerator[pb.TaskEvent, None]:
    """Yield the events `request` selects, resubscribing whenever the stream ends.

    Each resubscription asks for the events after the last sequence received,
    so none is lost or repeated. Until an event arrives, the caller's own
    `after_sequence` is reused; a live-only watch resumes after the
    `rigger-head-sequence` its first stream announced. Status codes outside
    RETRYABLE (the table in clients/README.md, "Reconnecting", shared by every
    Rigger client) are raised as grpc.aio.AioRpcError; the watch otherwise
    runs until the caller is cancelled or closes the iterator (wrap it in
    contextlib.aclosing to end the stream as soon as a loop over it breaks).

    By default (`batched=True`) it subscribes with SubscribeToTaskEventBatches
    (same request fields, same guarantees), which costs fewer messages when
    events arrive faster than they could be sent one per message. A server
    that answers that method UNIMPLEMENTED (one from before it) is read
    through SubscribeToTaskEvents for the rest of the watch, at once and
    resuming as after any other ending; `on_fallback` hears of it. With
    `batched=False` it reads SubscribeToTaskEvents only.

    `on_head` is called when a live-only watch learns the head sequence its
    subscription was registered at: from then on it resumes after that
    sequence, so a caller that records its position (a state file) records
    that one until an event arrives.
    """
    backoff = Backoff(initial_backoff, max_backoff, backoff_multiplier, jitter)
    last: int | None = request.after_sequence if request.HasField("after_sequence") else None
    while True:
        attempt = pb.SubscribeToTaskEventsRequest()
        attempt.CopyFrom(request)
        if last is not None:
            attempt.after_sequence = last
        call = _open(stub, attempt, batched=batched)
        try:
            # grpc.aio calls start lazily and report nothing until the server
            # answers. The server sends headers right after it registers the
            # subscription, before replay and before any live event, so their
            # arrival means no later commit can be missed. A call refused
            # outright also resolves initial_metadata() (empty), but is done
            # by then, so it is not reported as subscribed.
            headers = await call.initial_metadata()
            if on_subscribed is not None and not call.done():
                on_subscribed(last)
            head = _sequence(dict(headers or ()).get(HEAD_SEQUENCE_KEY))
            if last is None and head is not None:
                # A live stream delivers exactly the events after the head it
                # announces; resuming from there loses nothing committed while
                # a reconnect is under way, even before the first event.
                last = head
                if on_head is not None:
                    on_head(last)
            async for event in _events(call, batched=batched):
                if last is not None and event.sequence <= last:
                    continue
                last = event.sequence
                backoff.reset()
                yield event
            code, details = grpc.StatusCode.OK, "the server ended the stream"
        except grpc.aio.AioRpcError as err:
            if batched and err.code() == grpc.StatusCode.UNIMPLEMENTED:
                # Not a failure: this server predates the batched stream.
                batched = False
                if on_fallback is not None:
                    on_fallback(err.details() or "")
                continue
            if err.code() not in RETRYABLE:
                raise
            code, details = err.code(), err.details() or ""
        finally:
            call.cancel()
        delay = backoff.next_delay()
        if on_retry is not None:
            on_retry(code, details, delay)
        await asyncio.sleep(delay)


def _sequence(text: str | bytes | None) -> int | None:
    # A header that is no uint64 (a server's bug) leaves the watch live-only,
    # as in the Go and TypeScript clients, rather than ending it.
    if not isinstance(text, str) or not (text.isascii() and text.isdigit()) or len(text) > 20:
        return None
    value = int(text)
    return value if value < 2**64 else None


def _open(
    stub: RiggerServiceAsyncStub, request: pb.SubscribeToTaskEventsRequest, *, batched: bool
) -> grpc.aio.UnaryStreamCall[Any, Any]:
    if not batched:
        return stub.SubscribeToTaskEvents(request)
    # The batched request has the same fields under the same numbers.
    return stub.SubscribeToTaskEventBatches(
        pb.SubscribeToTaskEventBatchesRequest.FromString(request.SerializeToString())
    )


async def _events(
    call: grpc.aio.UnaryStreamCall[Any, Any], *, batched: bool
) -> AsyncIterator[pb.TaskEvent]:
    async for message in call:
        if batched:
            for event in message.events:
                yield event
        else:
            yield message
