"""The rigger.v1 servicer: wire messages in, domain calls, wire messages and status codes out.

This is the only module that picks gRPC status codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf.message import DecodeError
from google.protobuf.message_factory import GetMessageClass
from rigger.v1 import rigger_pb2 as pb

from rigger_server import auth, errors, events, handlers, metrics, wire
from rigger_server.domain import Event
from rigger_server.events import EventFilter
from rigger_server.feed import Feed
from rigger_server.guard import WriteGuard
from rigger_server.limits import MAX_BATCH_MESSAGE_BYTES, MAX_STATUS_MESSAGE_BYTES
from rigger_server.planner import Deadline
from rigger_server.planning import Generated, Planning
from rigger_server.regeneration import Outcome, Result, requested_mode
from rigger_server.request_limits import check_request
from rigger_server.store import TaskQuery
from rigger_server.tasks import (
    NewTask,
    TaskBook,
    TaskChange,
    check_event_type,
    check_status,
)

SERVICE = pb.DESCRIPTOR.services_by_name["RiggerService"]
SERVICE_NAME = SERVICE.full_name
LAST_SEQUENCE_KEY = "rigger-last-sequence"
HEAD_SEQUENCE_KEY = "rigger-head-sequence"

log = logging.getLogger(__name__)

_CODES: dict[type[errors.RiggerError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.VersionConflict: grpc.StatusCode.ABORTED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    # Answers that never validate, even after the retries: the model cannot
    # do this (at temperature 0 asking again gives the same answer), so the
    # caller should pick another model rather than retry.
    errors.PlannerOutputInvalid: grpc.StatusCode.FAILED_PRECONDITION,
}

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Unary = Callable[[Any, Req, grpc.aio.ServicerContext[Any, Any]], Awaitable[Resp]]


def status_of(exc: errors.RiggerError) -> grpc.StatusCode:
    """The status code for a domain error."""
    for kind, code in _CODES.items():
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.INVALID_ARGUMENT


class Malformed:
    """A request whose bytes did not parse; handlers answer it with INVALID_ARGUMENT."""

    def __init__(self, type_name: str, exc: DecodeError) -> None:
        self.error = errors.InvalidArgument("request", f"not a valid {type_name}: {exc}")


def _lenient(message_type: Any) -> Callable[[bytes], Any]:
    # grpc answers a deserializer's exception with UNKNOWN; parsing leniently
    # here lets the handler answer bad bytes with INVALID_ARGUMENT instead.
    def deserialize(data: bytes) -> Any:
        try:
            return message_type.FromString(data)
        except DecodeError as exc:
            return Malformed(message_type.DESCRIPTOR.full_name, exc)

    return deserialize


def _parsed(request: Any) -> Any:
    if isinstance(request, Malformed):
        raise request.error
    return request


# Marks where a status message was cut; ASCII, so it costs its length.
_CUT = " ... (cut)"


def _grpc_message_bytes(char: str) -> int:
    # grpc-message is percent-encoded: printable ASCII but '%' as is, every
    # other byte of the UTF-8 as %XX.
    code = ord(char)
    if 0x20 <= code <= 0x7E and code != 0x25:
        return 1
    return 3 * len(char.encode("utf-8", "replace"))


def status_message(text: str, limit: int = MAX_STATUS_MESSAGE_BYTES) -> str:
    """`text` cut to at most `limit` bytes as the grpc-message trailer carries it.

    Clients refuse a longer trailer, and then report RESOURCE_EXHAUSTED
    ("metadata size exceeds hard limit") instead of the status the server
    sent, which they retry for ever. Messages quote at most a prefix of what
    callers sent (errors.quoted); this is the last bound, whatever a message
    holds.
    """
    if len(text) * 12 > limit and sum(map(_grpc_message_bytes, text)) > limit:
        budget = limit - len(_CUT)
        size = 0
        for index, char in enumerate(text):
            size += _grpc_message_bytes(char)
            if size > budget:
                text = text[:index] + _CUT
                break
    # Half a surrogate pair (a JSON escape from a model or Ollama can make
    # one) has no UTF-8 at all: gRPC could not send the status.
    return text.encode("utf-8", "replace").decode("utf-8")


async def _abort(
    context: grpc.aio.ServicerContext[Any, Any], code: grpc.StatusCode, message: str
) -> NoReturn:
    """End the call with `code` and `message`, cut to what every client accepts."""
    await context.abort(code, status_message(message))
    raise AssertionError("unreachable: abort raises")


def _unary(method: Unary[Req, Resp]) -> Unary[Req, Resp]:
    """Map domain errors to their status codes; anything else is a bug and says so."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Req, context: grpc.aio.ServicerContext[Any, Any]) -> Resp:
        try:
            return await method(self, self._checked(request), context)
        except errors.RiggerError as exc:
            self._report(method.__name__, exc)
            await _abort(context, *self.answer(exc))
        except Exception:
            log.exception("%s failed", method.__name__)
            await _abort(context, grpc.StatusCode.INTERNAL, "internal error; see the server log")

    return wrapper


def encode_generated(generated: Generated) -> bytes:
    """A generation's answer on the wire (Planning makes it inside the generation's transaction)."""
    return _generated_to_pb(generated).SerializeToString()


def _generated_to_pb(generated: Generated) -> pb.GenerateTasksFromPRDResponse:
    return pb.GenerateTasksFromPRDResponse(
        tasks=[wire.task_to_pb(task) for task in generated.tasks],
        tasks_generated=len(generated.tasks),
        planner=generated.planner,
        model=generated.model,
        prd_id=generated.prd_id,
        archived_task_ids=generated.archived_task_ids,
        results=[_result_to_pb(result) for result in generated.results],
    )


def _result_to_pb(result: Result) -> pb.GeneratedTask:
    # A created task is in the answer's `tasks` already: sent once, by id here.
    created = result.outcome is Outcome.CREATED
    return pb.GeneratedTask(
        task=None if created else wire.task_to_pb(result.task),
        outcome=int(result.outcome),  # type: ignore[arg-type]
        changed_fields=result.changed_fields,
        task_id=result.task.id,
    )


def _optional(message: Any, field: str) -> Any:
    return getattr(message, field) if message.HasField(field) else None


# Turns a queued batch of events into messages, each with its last event's sequence.
Encode = Callable[[list[Event]], Iterable[tuple[bytes, int]]]


def _one_per_message(batch: list[Event]) -> Iterable[tuple[bytes, int]]:
    return ((event.payload, event.sequence) for event in batch)


def _batched(batch: list[Event]) -> Iterable[tuple[bytes, int]]:
    # Capped by bytes: one message of everything queued could exceed what
    # clients accept (4 MiB by default), and every retry would repeat it.
    sent = 0
    payloads = [event.payload for event in batch]
    for message, count in wire.encode_batches(payloads, MAX_BATCH_MESSAGE_BYTES):
        sent += count
        yield message, batch[sent - 1].sequence


def _subscription_stream(
    doc: str, encode: Encode, kind: str
) -> Callable[..., AsyncIterator[bytes]]:
    """A server-streaming subscription handler that sends each queued batch as `encode` says.

    SubscribeToTaskEvents and SubscribeToTaskEventBatches share it, so they
    agree on validation, headers and how a stream ends (lag, shutdown).
    `kind` names the stream in the metrics.
    """
    meter = metrics.STREAMS[kind]

    async def stream(
        self: RiggerServicer, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        last = 0
        try:
            request = self._checked(request)
            feed = await self._open_feed(request, context)
        except Exception as exc:
            await self._end_stream(context, exc, last)
            return
        last = feed.head if not request.HasField("after_sequence") else request.after_sequence
        release = self._hold_token(context, lambda: feed.end(auth.Revoked))
        try:
            with meter.held():
                while True:
                    batch = await feed.next_batch()
                    messages = 0
                    for message, sequence in encode(batch):
                        yield message
                        last = sequence
                        messages += 1
                    # Counted once a batch, never per event.
                    meter.delivered(len(batch), messages)
        except Exception as exc:
            await self._end_stream(context, exc, last)
        finally:
            release()
            feed.close()

    stream.__doc__ = doc
    return stream


class RiggerServicer:
    """Implements rigger.v1.RiggerService over a TaskBook and its Planning."""

    def __init__(
        self,
        book: TaskBook,
        planning: Planning,
        *,
        batch_turns: int,
        token_auth: auth.TokenAuth | None = None,
        on_store_gone: Callable[[], None] | None = None,
    ) -> None:
        self.book = book
        self.planning = planning
        # Batched streams take turns to send (feed.py says why).
        self._turns = events.Turns(batch_turns)
        # With tokens, every stream holds its caller's token and ends when a
        # rotation revokes it.
        self._auth = token_auth
        # Told when the database turns out deleted or replaced, so the server
        # can say NOT_SERVING: no write can succeed until it restarts.
        self._on_store_gone = on_store_gone

    @property
    def turns(self) -> events.Turns:
        """The turns the batched streams take (for the metrics)."""
        return self._turns

    def answer(self, exc: errors.RiggerError) -> tuple[grpc.StatusCode, str]:
        """How a call that raised a domain error ends: its status code and message.

        Every error answer comes through here (also a test seam: seams.py).
        """
        return status_of(exc), str(exc)

    def _checked(self, request: Any) -> Any:
        """The parsed request, every string and repeated field within its limit."""
        request = _parsed(request)
        check_request(request, self.book.limits)
        return request

    def _hold_token(
        self, context: grpc.aio.ServicerContext[Any, Any], on_revoked: Callable[[], None]
    ) -> Callable[[], None]:
        """Call `on_revoked` when a rotation revokes this call's token; returns the release."""
        if self._auth is None:
            return lambda: None
        return self._auth.hold(auth.authorization(context.invocation_metadata()), on_revoked)

    def _guard(self, context: grpc.aio.ServicerContext[Any, Any]) -> WriteGuard:
        """What this call's writes must still satisfy when they commit: its deadline, its token.

        The interceptor checked the token when the call's headers arrived;
        the body, and the write, may come much later.
        """
        deadline = Deadline.after(context.time_remaining())
        if self._auth is None:
            return WriteGuard(deadline)
        header = auth.authorization(context.invocation_metadata())
        return WriteGuard(deadline, functools.partial(self._auth.accepts, header))

    def _report(self, where: str, exc: errors.RiggerError) -> None:
        """Log what a storage fault hides from the client; act on a vanished database."""
        if not isinstance(exc, errors.StoreFault):
            return
        log.warning("%s: %s (storage said: %s)", where, exc, exc.__cause__ or "nothing more")
        if isinstance(exc, errors.StoreGone) and self._on_store_gone is not None:
            self._on_store_gone()

    # --- unary ---------------------------------------------------------------

    @_unary
    async def ListTasks(
        self, request: pb.ListTasksRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListTasksResponse:
        """List tasks with combined filters; archived only when asked for."""
        status = None
        if request.HasField("status"):
            status = check_status(request.status)
            if status == 0:
                status = None  # UNSPECIFIED filters nothing
        query = TaskQuery(
            status=status,
            assignee=_optional(request, "assignee"),
            limit=request.limit if request.HasField("limit") and request.limit > 0 else None,
            offset=request.offset,
        )
        tasks, total = await self.book.list_tasks(query)
        return pb.ListTasksResponse(tasks=[wire.task_to_pb(t) for t in tasks], total_count=total)

    @_unary
    async def AddTask(
        self, request: pb.AddTaskRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.AddTaskResponse:
        """Create a task."""
        task = await self.book.add_task(
            NewTask(
                title=request.title,
                assignee=_optional(request, "assignee"),
                due_date=_optional(request, "due_date"),
                source_prd_id=_optional(request, "source_prd_id"),
                parent_task_id=_optional(request, "parent_task_id"),
            ),
            self._guard(context),
        )
        return pb.AddTaskResponse(task=wire.task_to_pb(task))

    @_unary
    async def UpdateTask(
        self, request: pb.UpdateTaskRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.UpdateTaskResponse:
        """Change the fields that are set."""
        task = await self.book.update_task(
            TaskChange(
                task_id=request.task_id,
                status=_optional(request, "status"),
                assignee=_optional(request, "assignee"),
                due_date=_optional(request, "due_date"),
                title=_optional(request, "title"),
                expected_version=_optional(request, "expected_version"),
            ),
            self._guard(context),
        )
        return pb.UpdateTaskResponse(task=wire.task_to_pb(task))

    @_unary
    async def GetTask(
        self, request: pb.GetTaskRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetTaskResponse:
        """Return one task."""
        task = await self.book.get_task(request.task_id)
        return pb.GetTaskResponse(task=wire.task_to_pb(task))

    @_unary
    async def DeleteTask(
        self, request: pb.DeleteTaskRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.DeleteTaskResponse:
        """Archive a task."""
        await self.book.delete_task(request.task_id, self._guard(context))
        return pb.DeleteTaskResponse(success=True)

    @_unary
    async def ParsePRD(
        self, request: pb.ParsePRDRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ParsePRDResponse:
        """Parse and store a PRD file from inside the project root."""
        prd = await self.planning.parse_prd(request.prd_file_path, self._guard(context))
        return wire.prd_to_pb(prd)

    @_unary
    async def GenerateTasksFromPRD(
        self, request: pb.GenerateTasksFromPRDRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GenerateTasksFromPRDResponse:
        """Plan a stored PRD (or a PRD file) into tasks and create them all at once."""
        generated = await self.planning.generate_tasks(
            request.prd_id,
            model=request.model,
            mode=requested_mode(request.mode, request.replace_existing),
            guard=self._guard(context),
        )
        if generated.answer:
            return generated.answer  # type: ignore[return-value]  # encoded before the commit
        # Off the event loop: a 1 MiB PRD makes tens of thousands of tasks.
        return await asyncio.to_thread(_generated_to_pb, generated)

    @_unary
    async def OrchestrateTask(
        self, request: pb.OrchestrateTaskRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.OrchestrateTaskResponse:
        """Route a task, then enhance and test it or decompose it, and commit it all at once."""
        done = await self.planning.orchestrate_task(
            request.task_id,
            model=request.model,
            test_type=request.test_type,
            expected_version=_optional(request, "expected_version"),
            guard=self._guard(context),
        )
        result = pb.OrchestrationResult(
            success=True,
            routing_decision=done.routing_decision,
            subtasks=[wire.task_to_pb(task) for task in done.subtasks],
            planner=done.planner,
            model=done.model,
            complexity_score=done.score,
            routing_reasons=done.reasons,
        )
        if done.enhancement is not None:
            result.enhancement.CopyFrom(wire.enhancement_to_pb(done.enhancement))
        if done.test is not None:
            result.comprehension_test.CopyFrom(wire.test_to_pb(done.test))
        return pb.OrchestrateTaskResponse(task=wire.task_to_pb(done.task), result=result)

    # --- streams -------------------------------------------------------------

    async def _subscription(
        self, request: pb.SubscribeToTaskEventsRequest | pb.SubscribeToTaskEventBatchesRequest
    ) -> tuple[EventFilter, int | None]:
        event_filter = EventFilter(
            event_types=frozenset(check_event_type(t) for t in request.event_types),
            assignee=_optional(request, "assignee_filter"),
        )
        after = _optional(request, "after_sequence")
        # Whatever another server committed before now is published here
        # first, so the subscription's head covers it.
        head = await self.book.catch_up()
        if after is not None and after > head:
            raise errors.InvalidArgument(
                "after_sequence",
                f"{after} is beyond the newest event ({head}); was the database replaced?",
            )
        return event_filter, after

    async def _open_feed(
        self,
        request: pb.SubscribeToTaskEventsRequest | pb.SubscribeToTaskEventBatchesRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> Feed:
        """Register the subscription, then send headers saying so.

        Once headers arrive the client cannot miss a committed event;
        `rigger-head-sequence` names the newest event this server had
        published to subscribers at that moment. A live-only stream delivers
        exactly the events after it, so a client that disconnects before its
        first event resumes from there.
        """
        event_filter, after = await self._subscription(request)
        batched = isinstance(request, pb.SubscribeToTaskEventBatchesRequest)
        feed = self.book.open_feed(event_filter, after, self._turns if batched else None)
        try:
            await context.send_initial_metadata(((HEAD_SEQUENCE_KEY, str(feed.head)),))
        except BaseException:
            feed.close()
            raise
        return feed

    async def _end_stream(
        self, context: grpc.aio.ServicerContext[Any, Any], exc: BaseException, last: int
    ) -> None:
        context.set_trailing_metadata(((LAST_SEQUENCE_KEY, str(last)),))
        if isinstance(exc, events.Lagged):
            metrics.subscriber_ended("lagging")
            log.warning("subscriber %s lagged at sequence %d; ended it", context.peer(), last)
            broadcaster = self.book.broadcaster
            behind = (
                f"{broadcaster.buffer_bytes} bytes of events"
                if isinstance(exc, events.LaggedBytes)
                else f"{broadcaster.buffer} events"
            )
            await _abort(
                context,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"subscriber fell more than {behind} behind; "
                f"last sequence received: {last}. Resubscribe with after_sequence={last} "
                "to resume without loss",
            )
        if isinstance(exc, auth.Revoked):
            metrics.subscriber_ended("token_revoked")
            await _abort(
                context,
                grpc.StatusCode.UNAUTHENTICATED,
                f"{auth.REVOKED_MESSAGE}; last sequence received: {last}. Reconnect with a "
                f"valid token and resubscribe with after_sequence={last} to resume without loss",
            )
        if isinstance(exc, events.Closed):
            await _abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                f"server is shutting down; last sequence received: {last}. "
                f"Resubscribe with after_sequence={last} to resume without loss",
            )
        if isinstance(exc, errors.StoreFault):
            self._report("event stream", exc)
            code, message = self.answer(exc)
            await _abort(
                context,
                code,
                f"{message}; last sequence received: {last}. "
                f"Resubscribe with after_sequence={last} to resume without loss",
            )
        if isinstance(exc, errors.RiggerError):
            await _abort(context, *self.answer(exc))
        # Never UNKNOWN, never an internal message: the details go to the log.
        log.error("event stream failed", exc_info=exc)
        await _abort(context, grpc.StatusCode.INTERNAL, "internal error; see the server log")

    SubscribeToTaskEvents = _subscription_stream(
        "Stream matching events (pre-encoded TaskEvent bytes) until cancelled.",
        _one_per_message,
        "plain",
    )
    SubscribeToTaskEventBatches = _subscription_stream(
        "Stream matching events, everything queued so far in messages of at most "
        "limits.MAX_BATCH_MESSAGE_BYTES, until cancelled.",
        _batched,
        "batched",
    )

    async def TaskEventStream(
        self,
        request_iterator: AsyncIterator[pb.TaskEventStreamRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[bytes]:
        """A `subscribe` first, then updates; streams the filtered events, own updates included."""
        last = 0
        try:
            first = await anext(aiter(request_iterator), None)
            if first is None:
                return
            if self._checked(first).WhichOneof("request") != "subscribe":
                raise errors.InvalidArgument("request", "the first message must be `subscribe`")
            subscribe = first.subscribe
            feed = await self._open_feed(subscribe, context)
        except Exception as exc:
            await self._end_stream(context, exc, last)
            return
        last = feed.head if not subscribe.HasField("after_sequence") else subscribe.after_sequence
        revoked = False

        def revoke() -> None:
            nonlocal revoked
            revoked = True
            feed.end(auth.Revoked)

        release = self._hold_token(context, revoke)
        updates = asyncio.ensure_future(
            self._apply_updates(request_iterator, lambda: revoked, self._guard(context))
        )
        meter = metrics.STREAMS["bidirectional"]
        try:
            with meter.held():
                async with contextlib.aclosing(feed.batches()) as batches:
                    next_batch = asyncio.ensure_future(anext(batches))
                    try:
                        while True:
                            if updates.done():
                                # Raise a failed update's error, even one that
                                # failed while this generator was suspended.
                                updates.result()
                            waiting = {next_batch} if updates.done() else {next_batch, updates}
                            done, _ = await asyncio.wait(
                                waiting, return_when=asyncio.FIRST_COMPLETED
                            )
                            if next_batch in done:
                                batch = next_batch.result()
                                for event in batch:
                                    yield event.payload
                                    last = event.sequence
                                meter.delivered(len(batch), len(batch))
                                next_batch = asyncio.ensure_future(anext(batches))
                    finally:
                        next_batch.cancel()
                        await asyncio.gather(next_batch, return_exceptions=True)
        except Exception as exc:
            await self._end_stream(context, exc, last)
        finally:
            release()
            updates.cancel()
            await asyncio.gather(updates, return_exceptions=True)
            feed.close()

    async def _apply_updates(
        self,
        request_iterator: AsyncIterator[pb.TaskEventStreamRequest],
        revoked: Callable[[], bool],
        guard: WriteGuard,
    ) -> None:
        async for message in request_iterator:
            if revoked():
                # The stream is ending; nothing more from it is applied.
                raise auth.Revoked()
            if self._checked(message).WhichOneof("request") != "update":
                raise errors.InvalidArgument("subscribe", "may be sent only once, first")
            update = message.update
            await self.book.update_task(
                TaskChange(
                    task_id=update.task_id,
                    status=_optional(update, "status"),
                    assignee=_optional(update, "assignee"),
                ),
                guard,
            )


def rpc_handler(servicer: RiggerServicer) -> grpc.GenericRpcHandler:
    """Register the servicer's method of the same name for every method of the service.

    The table is read off the rigger.v1 descriptor: names, request types and
    shapes are the contract's, never copied here. Streams send pre-encoded
    bytes, so they have no response serializer.
    """
    by_name = {}
    for method in SERVICE.methods:
        shape = (method.client_streaming, method.server_streaming)
        by_name[method.name] = handlers.MAKERS[shape](
            getattr(servicer, method.name),
            request_deserializer=_lenient(GetMessageClass(method.input_type)),
            response_serializer=None if method.server_streaming else _encoded,
        )
    return grpc.method_handlers_generic_handler(SERVICE_NAME, by_name)


def _encoded(response: Any) -> bytes:
    # An answer may come encoded already (a generation's, made before its commit).
    return response if isinstance(response, bytes) else response.SerializeToString()
