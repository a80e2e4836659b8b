"""A run's streams: opening them on the executors, and judging what arrives on each.

Every client's instance of a case stream is a `StreamHandle`; expectations
claim its events in order, and once the steps are done every stream is
checked for order, gaps, well-formed events, unclaimed events and, for
fanout streams, agreement between the instances.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from rigger.conformance.v1 import harness_pb2 as hp
from rigger.v1 import rigger_pb2 as pb

from conformance import cases as c
from conformance.cases import messages
from conformance.executors.process import ExecutorProcess, StreamState
from conformance.runner import judge
from conformance.runner.describe import CODE_NAMES, difference, end_text, short, summaries, summary
from conformance.runner.stage import ANSWER_SLACK_S, Stage
from conformance.runner.steps import Scope, fail, for_each
from conformance.runner.transcript import Record, Transcript


@dataclasses.dataclass
class StreamHandle:
    """One client's instance of a case stream."""

    name: str
    instance: str
    language: str
    executor: ExecutorProcess
    state: StreamState
    unchecked: bool
    subscription: pb.SubscribeToTaskEventsRequest | None = None
    claimed: int = 0
    end_judged: bool = False

    @property
    def label(self) -> str:
        """`events` for a single client, `events@go` for a fanout instance."""
        suffix = self.instance.partition("@")[2]
        return f"{self.name}@{suffix}" if suffix else self.name

    def finished(self) -> bool:
        """True once the stream ended, or its executor failed it."""
        return self.state.end is not None or bool(self.state.errors)

    def unclaimed(self) -> list[pb.TaskEvent]:
        """Events received that no step has expected yet."""
        return [r.event for r in self.state.received[self.claimed :]]


class Streams:
    """The streams of one run, by case stream name, and the steps that act on them."""

    def __init__(
        self, stage: Stage, transcript: Transcript, tag: str, judged: frozenset[str] | None
    ) -> None:
        self.stage = stage
        self.transcript = transcript
        # Stream names must never repeat on a reused executor.
        self.tag = tag
        # The schema capabilities both the server and the clients have (None:
        # all). Without `sequence`, the per-stream checks leave sequences alone.
        self.judged = judged
        self.handles: dict[str, list[StreamHandle]] = {}

    def all(self) -> list[StreamHandle]:
        """Every client's instance of every stream."""
        return [h for hs in self.handles.values() for h in hs]

    async def open(self, step: c.Open, scope: Scope) -> None:
        """The `open` step: the stream on every client of its role; optionally wait for headers."""
        method = messages.SERVICE.methods_by_name[step.method]
        request = None
        if step.request is not None or not method.client_streaming:
            request = messages.build(
                method.input_type, scope.bindings.resolve(step.request or {}), "request"
            )
        metadata = scope.bindings.resolve(dict(step.metadata))
        subscription = None
        if isinstance(request, pb.SubscribeToTaskEventsRequest):
            subscription = request
        elif isinstance(request, pb.SubscribeToTaskEventBatchesRequest):
            # The same fields with the same numbers: judged like the plain stream.
            subscription = pb.SubscribeToTaskEventsRequest.FromString(request.SerializeToString())
        handles = []
        for instance, language, executor in self.stage.instances(step.client):
            name = f"{self.tag}.{step.stream}"
            state = await executor.open_stream(
                name,
                hp.OpenStream(
                    stream=name,
                    method=step.method,
                    request=request.SerializeToString() if request is not None else b"",
                    metadata=metadata,
                    timeout_ms=step.timeout_ms,
                ),
            )
            handles.append(
                StreamHandle(
                    name=step.stream,
                    instance=instance,
                    language=language,
                    executor=executor,
                    state=state,
                    unchecked=step.unchecked,
                    subscription=subscription,
                )
            )
        self.handles[step.stream] = handles
        if step.wait_headers:
            expected = scope.bindings.resolve(dict(step.headers)) if step.headers else None
            await for_each(handles, lambda h: self.await_live(step, h, expected, scope))

    async def await_live(
        self,
        step: c.Step,
        handle: StreamHandle,
        expected: dict[str, str] | None,
        scope: Scope,
    ) -> None:
        """Wait for a stream's response headers (it is registered) and judge them."""
        state = handle.state
        live = await state.wait_for(
            lambda: state.headers is not None or state.end is not None or bool(state.errors),
            c.DEFAULT_WITHIN_MS / 1000,
        )
        problems = list(state.errors)
        if not live:
            problems.append(
                f"no response headers within {c.DEFAULT_WITHIN_MS} ms: "
                "the subscription never reported itself live"
            )
        elif expected:
            problems += judge.match_headers(expected, state.headers or {}, "headers")
        # Headers opened concurrently with writes name a racy head sequence.
        if state.headers and not scope.unordered:
            self.transcript.add(
                Record(
                    at=step.where,
                    client=handle.instance.partition("@")[0],
                    kind="headers",
                    trailers=state.headers,
                    unordered=scope.unordered,
                )
            )
        fail(step, f"{handle.instance}/{handle.language}", problems)

    async def send(self, step: c.Send, scope: Scope) -> None:
        """The `send` step: a message on every instance of a bidirectional stream."""
        bidi = messages.SERVICE.methods_by_name["TaskEventStream"].input_type
        message = messages.build(bidi, scope.bindings.resolve(step.message), "message")

        async def one(handle: StreamHandle) -> None:
            answer = await handle.executor.request(
                ANSWER_SLACK_S,
                stream_send=hp.StreamSend(
                    stream=handle.state.name, message=message.SerializeToString()
                ),
            )
            # A send that races with the server ending the stream may fail in
            # some languages; how the stream ended is judged by expect_end.
            if answer.WhichOneof("result") != "done" and handle.state.end is None:
                fail(step, handle.instance, [f"the executor answered {short(answer)}"])
            if (
                isinstance(message, pb.TaskEventStreamRequest)
                and message.WhichOneof("request") == "subscribe"
                and handle.subscription is None
            ):
                handle.subscription = message.subscribe
            if step.wait_headers:
                await self.await_live(step, handle, None, scope)

        await for_each(self.handles[step.stream], one)

    async def close_send(self, step: c.CloseSend, scope: Scope) -> None:
        """The `close_send` step: half-close every instance of the stream."""

        async def one(handle: StreamHandle) -> None:
            answer = await handle.executor.request(
                ANSWER_SLACK_S, stream_close_send=hp.StreamCloseSend(stream=handle.state.name)
            )
            if answer.WhichOneof("result") != "done" and handle.state.end is None:
                fail(step, handle.instance, [f"the executor answered {short(answer)}"])

        await for_each(self.handles[step.stream], one)

    async def cancel(self, step: c.Cancel, scope: Scope) -> None:
        """The `cancel` step: cancel every instance, then judge how each ended."""

        async def one(handle: StreamHandle) -> None:
            # A stream the server already ended has nothing to cancel; judging
            # its end below says how it ended instead.
            if handle.state.end is None:
                answer = await handle.executor.request(
                    ANSWER_SLACK_S, stream_cancel=hp.StreamCancel(stream=handle.state.name)
                )
                if answer.WhichOneof("result") != "done":
                    fail(step, handle.instance, [f"the executor answered {short(answer)}"])
            await self.judge_end(step, handle, c.Expect(code=step.code), None, scope)

        await for_each(self.handles[step.stream], one)

    async def expect_events(self, step: c.ExpectEvents, scope: Scope) -> None:
        """The `expect_events` step: the next events on every instance, matched and recorded."""
        resolve = scope.bindings.resolve
        ordered = [resolve(m) for m in step.events] if step.events is not None else None
        unordered = [resolve(m) for m in step.unordered] if step.unordered is not None else None
        each = resolve(step.each) if step.each is not None else None
        wanted = len(ordered or unordered or []) if step.count is None else step.count

        async def one(handle: StreamHandle) -> None:
            state = handle.state
            start = handle.claimed
            await state.wait_for(
                lambda: (
                    len(state.received) - start >= wanted
                    or state.end is not None
                    or bool(state.errors)
                ),
                step.within_ms / 1000,
            )
            if len(state.received) - start >= wanted and step.quiet_ms:
                await asyncio.sleep(step.quiet_ms / 1000)
            got = [r.event for r in state.received[start : start + wanted]]
            extra = [r.event for r in state.received[start + wanted :]]
            handle.claimed = start + len(got)
            problems = list(state.errors)
            if len(got) < wanted:
                why = f"; the stream ended: {end_text(state.end)}" if state.end else ""
                problems.append(
                    f"expected {wanted} events within {step.within_ms} ms, got {len(got)}"
                    f"{why}: {summaries(got)}"
                )
            elif extra and step.quiet_ms:
                # quiet_ms: 0 leaves later events to the next expect_events.
                problems.append(
                    f"unexpected event(s) within {step.quiet_ms} ms after the expected ones: "
                    f"{summaries(extra)}"
                )
            if len(got) == wanted:
                problems += self.match_events(step, got, ordered, unordered, each)
            self.transcript.add(
                Record(
                    at=step.where,
                    client=handle.instance.partition("@")[0],
                    kind="events",
                    events=got,
                    unordered=scope.unordered or step.events is None,
                )
            )
            fail(step, f"{handle.label}/{handle.language}", problems)
            for name, index in step.capture.items():
                try:
                    scope.bindings.bind(name, got[index])
                except IndexError:
                    fail(step, handle.label, [f"capture {name}: no event {index}"])

        # Fanout instances capture in turn; the last one wins, and all must agree anyway.
        await for_each(self.handles[step.stream], one)

    @staticmethod
    def match_events(
        step: c.ExpectEvents,
        got: list[pb.TaskEvent],
        ordered: list[Any] | None,
        unordered: list[Any] | None,
        each: Any,
    ) -> list[str]:
        """The problems of `got` against an expect_events step's lists."""
        problems: list[str] = []
        if ordered is not None:
            for index, (event, want) in enumerate(zip(got, ordered, strict=True)):
                found = judge.match_message(want, event, f"event[{index}]")
                if found:
                    problems += [*found, f"event[{index}] was {summary(event)}"]
        if unordered is not None:
            left = list(range(len(got)))
            for index, want in enumerate(unordered):
                hit = next((i for i in left if not judge.match_message(want, got[i])), None)
                if hit is None:
                    problems.append(
                        f"no event matches unordered[{index}] {judge.show(want)} among "
                        f"{summaries([got[i] for i in left])}"
                    )
                else:
                    left.remove(hit)
        if each is not None:
            for index, event in enumerate(got):
                problems += judge.match_message(each, event, f"event[{index}]")
                if len(problems) > 5:
                    break
        if step.distinct:
            problems += judge.check_distinct(got, step.distinct, "events")
        if step.ordered_within:
            problems += judge.check_ordered_within(got, *step.ordered_within, "events")
        return problems

    async def expect_end(self, step: c.ExpectEnd, scope: Scope) -> None:
        """The `expect_end` step: how every instance of the stream ended."""
        await for_each(
            self.handles[step.stream],
            lambda h: self.judge_end(step, h, step.expect, step.capture, scope),
        )

    async def judge_end(
        self,
        step: c.Step,
        handle: StreamHandle,
        expect: c.Expect,
        capture: str | None,
        scope: Scope,
    ) -> None:
        """Wait for one instance to end; judge its status and trailers, and record it."""
        state = handle.state
        within = (expect.within_ms or c.DEFAULT_WITHIN_MS) / 1000
        ended = await state.wait_for(lambda: state.end is not None or bool(state.errors), within)
        problems = list(state.errors)
        handle.end_judged = True
        unclaimed = handle.unclaimed()
        if unclaimed and not handle.unchecked:
            problems.append(f"events arrived that no step expected: {summaries(unclaimed)}")
            handle.claimed = len(state.received)
        if not ended or state.end is None:
            problems.append(f"the stream did not end within {within * 1000:.0f} ms")
            fail(step, f"{handle.label}/{handle.language}", problems)
            return
        end = state.end
        trailers = {h.key: h.value for h in end.trailers}
        problems += judge.match_status(
            expect.code,
            expect.message_contains,
            end.status.code,
            end.status.message,
            CODE_NAMES,
            "status",
        )
        if expect.trailers:
            problems += judge.match_headers(
                scope.bindings.resolve(dict(expect.trailers)), trailers, "trailers"
            )
        code = CODE_NAMES.get(end.status.code, str(end.status.code))
        self.transcript.add(
            Record(
                at=step.where,
                client=handle.instance.partition("@")[0],
                kind="end",
                code=code,
                message=end.status.message,
                transport=handle.instance in self.stage.refused,
                trailers=trailers,
                unordered=scope.unordered,
            )
        )
        fail(step, f"{handle.label}/{handle.language}", problems)
        if capture:
            scope.bindings.bind(
                capture, {"code": code, "message": end.status.message, "trailers": trailers}
            )

    async def expect_quiet(self, step: c.ExpectQuiet, scope: Scope) -> None:
        """The `expect_quiet` step: no event for a while on any instance."""
        await asyncio.sleep(step.ms / 1000)
        for handle in self.handles[step.stream]:
            extra = handle.unclaimed()
            handle.claimed = len(handle.state.received)
            problems = list(handle.state.errors)
            if extra:
                problems.append(f"expected no events for {step.ms} ms, got {summaries(extra)}")
            fail(step, f"{handle.label}/{handle.language}", problems)

    async def expect_same(self, step: c.ExpectSame, scope: Scope) -> None:
        """The `expect_same` step: the named streams received identical events."""
        handles = [h for name in step.streams for h in self.handles[name]]
        first = handles[0]
        reference = [messages.to_plain(r.event) for r in first.state.received]
        for handle in handles[1:]:
            seen = [messages.to_plain(r.event) for r in handle.state.received]
            if seen != reference:
                fail(
                    step,
                    handle.label,
                    [difference(first.label, reference, handle.label, seen)],
                )

    def final_checks(self) -> list[str]:
        """What every stream must satisfy once the steps are done."""
        problems: list[str] = []
        for name, handles in self.handles.items():
            for handle in handles:
                problems += self.stream_checks(handle)
            problems += self.fanout_agreement(name, handles)
        return problems

    def stream_checks(self, handle: StreamHandle) -> list[str]:
        """Order, gaps, well-formed events, nothing unexpected: one instance."""
        label = f"stream {handle.label} ({handle.language})"
        state = handle.state
        events = [r.event for r in state.received]
        problems = [f"{label}: {e}" for e in state.errors]
        sequences = self.judged is None or "sequence" in self.judged
        problems += judge.check_stream_order(events, label, sequences=sequences)
        for index, event in enumerate(events):
            found = judge.check_event_fields(event, f"{label} event[{index}]", sequences=sequences)
            if found:
                problems += found
                break
        subscription = handle.subscription
        if (
            sequences
            and subscription is not None
            and not subscription.event_types
            and not subscription.HasField("assignee_filter")
        ):
            first = (
                subscription.after_sequence + 1 if subscription.HasField("after_sequence") else None
            )
            problems += judge.check_gapless(events, first, label)
        if not handle.unchecked and handle.unclaimed():
            problems.append(
                f"{label}: events arrived that no step expected: {summaries(handle.unclaimed())}"
            )
        if state.end is not None and not handle.end_judged:
            problems.append(f"{label}: ended unexpectedly with {end_text(state.end)}")
        return problems

    @staticmethod
    def fanout_agreement(name: str, handles: list[StreamHandle]) -> list[str]:
        """Every instance of a fanout stream received identical events."""
        if len(handles) < 2:
            return []
        reference = [messages.to_plain(r.event) for r in handles[0].state.received]
        problems = []
        for handle in handles[1:]:
            seen = [messages.to_plain(r.event) for r in handle.state.received]
            if seen != reference:
                problems.append(
                    f"fanout stream {name}: "
                    + difference(handles[0].label, reference, handle.label, seen)
                )
        return problems
