"""One case run: a fresh server, an executor per client, the steps, then the judgement.

The runner drives executors and compares what they report against the case;
executors never judge. A run stops at its first failed step, then still checks
what the streams saw, cleans up, and returns every problem it found.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import pathlib
import shutil
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from rigger.conformance.v1 import harness_pb2 as hp
from rigger.v1 import rigger_pb2 as pb

from conformance import cases as c
from conformance import discovery, judge, messages
from conformance.bindings import BindingError, Bindings
from conformance.executor import ExecutorDied, ExecutorPool, ExecutorProcess, StreamState
from conformance.pki import RunSecurity
from conformance.plan import Run
from conformance.serverproc import RIG
from conformance.target import Target, own
from conformance.transcript import Record, Transcript, normalise

REAL_SERVER = RIG
CODE_NAMES = {number: name for name, number in c.CODES.items()}

# How long the runner waits for an executor beyond the call's own deadline.
ANSWER_SLACK_S = 15.0
CLEANUP_WAIT_S = 3.0
SERVER_LOG_LINES = 15


class StepFailed(Exception):
    """A step's expectation was not met; the message lists every problem."""


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


@dataclasses.dataclass
class RunResult:
    """What one run came to."""

    run: Run
    problems: list[str]
    transcript: list[dict[str, Any]]
    duration_s: float
    server_log: str = ""
    # The run's directory (project, database, server log); passing runs delete it.
    directory: pathlib.Path | None = None

    @property
    def passed(self) -> bool:
        """True when nothing went wrong."""
        return not self.problems


@dataclasses.dataclass
class _Scope:
    """What nested steps inherit: names in scope and whether order is meaningful."""

    bindings: Bindings
    unordered: bool = False


def _location(step: c.Step) -> str:
    index = step.where.find("steps[")
    return step.where[index:] if index >= 0 else step.where


def write_files(project: pathlib.Path, files: Sequence[c.FileSpec]) -> None:
    """Create a case's files. Paths may lead out of the project into the run's own directory.

    Loading the case already refused anything leading further (cases.py); this
    checks again against the files as they are.
    """
    sandbox = project.parent.resolve()
    for spec in files:
        target = project / spec.path
        if spec.symlink is not None:
            resolved = (target.parent.resolve(strict=False) / spec.symlink).resolve(strict=False)
        else:
            resolved = target.resolve(strict=False)
        if not resolved.is_relative_to(sandbox):
            raise ValueError(f"files: {spec.path!r} leads outside the run's directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        if spec.directory:
            target.mkdir(exist_ok=True)
        elif spec.fifo:
            os.mkfifo(target)
        elif spec.symlink is not None:
            target.symlink_to(spec.symlink)
        elif spec.hex is not None:
            target.write_bytes(bytes.fromhex(spec.hex))
        else:
            target.write_text(spec.text or "", encoding="utf-8")


async def _all(work: Iterable[Awaitable[None]]) -> None:
    """Await everything at once; report every step failure together, re-raise anything else."""
    results = await asyncio.gather(*work, return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    for failure in failures:
        if not isinstance(failure, StepFailed):
            raise failure
    if failures:
        raise StepFailed("\n".join(str(f) for f in failures))


class CaseRun:
    """Carries out one run of one case."""

    def __init__(
        self,
        run: Run,
        pool: ExecutorPool,
        workdir: pathlib.Path,
        server_command: tuple[str, ...] = REAL_SERVER,
        server_args: tuple[str, ...] = (),
        tag: str = "r",
        target: Target | None = None,
        judged: frozenset[str] | None = None,
    ) -> None:
        self.run = run
        self.case = run.case
        self.pool = pool
        self.workdir = workdir
        self.project = workdir / "project"
        self.server_command = server_command
        # Flags every run's server gets before the case's own, e.g. --workers 2.
        self.server_args = server_args
        self.tag = tag
        # Where the server comes from (default: our own, with server_command).
        self.target = target or own(server_command)
        # The schema capabilities both the server and the clients have (None:
        # all). Without `sequence`, the per-stream checks leave sequences alone.
        self.judged = judged
        self.server: Any = None
        self.clients: dict[str, tuple[str, str, ExecutorProcess]] = {}  # instance → role, lang
        self.streams: dict[str, list[StreamHandle]] = {}
        self.transcript = Transcript()
        self.problems: list[str] = []
        self.pki: RunSecurity | None = None
        # Instances connected with a certificate the server must refuse: the
        # messages they see are made up by their own TLS stack.
        self.refused: set[str] = set()

    # --- lifecycle ------------------------------------------------------------

    async def execute(self) -> RunResult:
        """Run the case and judge it; never raises for a failed expectation."""
        started = time.monotonic()
        try:
            await self._setup()
            await self._steps(self.case.steps, _Scope(self._bindings()))
        except StepFailed as exc:
            self.problems.append(str(exc))
        except ExecutorDied as exc:
            self.problems.append(f"executor failure: {exc}")
        except Exception as exc:
            self.problems.append(f"runner error: {type(exc).__name__}: {exc}")
        if not self.problems:
            self.problems += self._final_checks()
        await self._teardown()
        log = self._server_log() if self.problems else ""
        return RunResult(
            run=self.run,
            problems=self.problems,
            transcript=normalise(
                self.transcript, self._replacements(), relative_sequences=self.target.shared
            ),
            duration_s=time.monotonic() - started,
            server_log=log,
            directory=self.workdir,
        )

    def _bindings(self) -> Bindings:
        assert self.server is not None
        return Bindings({"root": str(self.project.resolve()), "address": self.server.address})

    def _replacements(self) -> dict[str, str]:
        root = str(self.project.resolve())
        return {root: "<root>", str(self.workdir.resolve()): "<rundir>"}

    async def _setup(self) -> None:
        if self.workdir.exists():
            shutil.rmtree(self.workdir)
        self.project.mkdir(parents=True)
        write_files(self.project, self.case.files)
        security_args: tuple[str, ...] = ()
        credentials = None
        token = None
        if self.case.security is not None:
            security = self.case.security
            self.pki = RunSecurity.create(self.workdir / "pki", security.tls, security.tokens)
            security_args = self.pki.server_args
            credentials = self.pki.channel_credentials()
            token = security.tokens[0] if security.tokens else None
        self.server = self.target.server(
            self.project,
            db=self.workdir / "db" / "tasks.db",
            extra_args=(*self.server_args, *self.case.server_args, *security_args),
            credentials=credentials,
            token=token,
        )
        self.server.log_path = self.workdir / "server.log"
        await asyncio.to_thread(self.server.start)
        for instance, role, language in self.run.instances():
            executor = await self.pool.acquire(language)
            self.clients[instance] = (role, language, executor)
        await self._connect_all()

    async def _connect_all(self) -> None:
        self.refused.clear()
        await asyncio.gather(
            *(
                self._connect_one(i, e, c.DEFAULT_TOKEN, "valid")
                for i, (_, _, e) in self.clients.items()
            )
        )

    async def _connect_one(
        self, instance: str, executor: ExecutorProcess, token: str | None, certificate: str
    ) -> None:
        """Connect one executor: plaintext, or with the case's CA, certificate and token."""
        server = self._server_for(instance)
        connect = hp.Connect(address=server.address)
        security = self.case.security
        theirs = self.target.security
        if security is None and (theirs.tls or theirs.token):
            # A target configured outside the runner: its CA, our certificate, its token.
            connect.address = self.server.dial
            connect.ca_file = str(theirs.ca_file or "")
            connect.cert_file = str(theirs.cert_file or "")
            connect.key_file = str(theirs.key_file or "")
            # Connect steps need a case's `security:`, so this is always the default token.
            connect.token = theirs.token or ""
        if security is not None:
            assert self.pki is not None
            if token == c.DEFAULT_TOKEN:
                token = security.tokens[0] if security.tokens else None
            connect.token = token or ""
            if security.tls != "none":
                # The server certificate names localhost, not the address's IP.
                connect.address = f"localhost:{server.port}"
                connect.ca_file = str(self.pki.ca.cert)
                client_pem = {"valid": self.pki.client, "foreign": self.pki.foreign}.get(
                    certificate
                )
                if security.tls == "mutual" and client_pem is not None:
                    connect.cert_file = str(client_pem.cert)
                    connect.key_file = str(client_pem.key)
        if certificate == "valid":
            self.refused.discard(instance)
        else:
            self.refused.add(instance)
        answer = await executor.request(ANSWER_SLACK_S, connect=connect)
        if answer.WhichOneof("result") != "done":
            raise StepFailed(f"{instance}: Connect answered {answer}".strip())

    def _server_for(self, instance: str) -> Any:
        """The server a client dials: the run's one server, or its role's replica."""
        assert self.server is not None
        role = self.clients[instance][0]
        return self.server.replica_for(self.case.roles.index(role))

    async def _connect(self, step: c.Connect, scope: _Scope) -> None:
        async def one(target: tuple[str, str, ExecutorProcess]) -> None:
            instance, _, executor = target
            await self._connect_one(instance, executor, step.token, step.certificate)

        await self._each(self._instances(step.client), one)

    async def _teardown(self) -> None:
        handles = [h for hs in self.streams.values() for h in hs]
        healthy = {id(e): True for _, _, e in self.clients.values()}
        open_ = [h for h in handles if h.state.end is None and not h.state.errors]
        for handle in open_:
            with contextlib.suppress(ExecutorDied):
                await handle.executor.request(
                    ANSWER_SLACK_S, stream_cancel=hp.StreamCancel(stream=handle.state.name)
                )
        for handle in open_:
            if not await handle.state.wait_for(handle.finished, CLEANUP_WAIT_S):
                healthy[id(handle.executor)] = False
        for _, _, executor in self.clients.values():
            self.pool.release(executor, healthy=healthy[id(executor)])
        self.clients.clear()
        if self.server is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.server.stop)

    def _server_log(self) -> str:
        # Only a log that complains helps explain a failure; INFO lines are noise.
        if self.server is None:
            return ""
        text = self.server.read_log()
        if not any(marker in text for marker in ("ERROR", "WARNING", "Traceback")):
            return ""
        return "\n".join(text.splitlines()[-SERVER_LOG_LINES:])

    # --- steps ----------------------------------------------------------------

    async def _steps(self, steps: Sequence[c.Step], scope: _Scope) -> None:
        for step in steps:
            await self._step(step, scope)

    async def _step(self, step: c.Step, scope: _Scope) -> None:
        handlers: dict[type, Callable[[Any, _Scope], Awaitable[None]]] = {
            c.Call: self._call,
            c.Open: self._open,
            c.Send: self._send,
            c.CloseSend: self._close_send,
            c.Cancel: self._cancel,
            c.ExpectEvents: self._expect_events,
            c.ExpectEnd: self._expect_end,
            c.ExpectQuiet: self._expect_quiet,
            c.ExpectSame: self._expect_same,
            c.Sleep: self._sleep,
            c.Server: self._server,
            c.Connect: self._connect,
            c.Parallel: self._parallel,
            c.Repeat: self._repeat,
            c.Discover: self._discover,
        }
        try:
            await handlers[type(step)](step, scope)
        except (BindingError, messages.MessageError) as exc:
            raise StepFailed(f"{_location(step)}: {exc}") from None

    def _instances(self, role: str) -> list[tuple[str, str, ExecutorProcess]]:
        return [(i, lang, e) for i, (r, lang, e) in self.clients.items() if r == role]

    @staticmethod
    def _fail(step: c.Step, who: str, problems: list[str]) -> None:
        if problems:
            prefix = f"{_location(step)} [{who}]"
            raise StepFailed("\n".join(f"{prefix}: {p}" for p in problems))

    async def _each(self, items: Sequence[Any], work: Callable[[Any], Awaitable[None]]) -> None:
        """Run work for every item at once (fanout instances); report every failure."""
        await _all(work(item) for item in items)

    async def _call(self, step: c.Call, scope: _Scope) -> None:
        method = messages.SERVICE.methods_by_name[step.method]
        request = messages.build(method.input_type, scope.bindings.resolve(step.request), "request")
        metadata = scope.bindings.resolve(dict(step.metadata))
        expect = step.expect
        wanted_response = (
            scope.bindings.resolve(expect.response) if expect.response is not None else None
        )

        async def one(target: tuple[str, str, ExecutorProcess]) -> None:
            instance, language, executor = target
            who = f"{instance}/{language}"
            started = time.monotonic()
            answer = await executor.request(
                step.timeout_ms / 1000 + ANSWER_SLACK_S,
                unary_call=hp.UnaryCall(
                    method=step.method,
                    request=request.SerializeToString(),
                    metadata=metadata,
                    timeout_ms=step.timeout_ms,
                ),
            )
            elapsed_ms = (time.monotonic() - started) * 1000
            if answer.WhichOneof("result") != "unary_result":
                self._fail(step, who, [f"the executor answered {_short(answer)}"])
            result = answer.unary_result
            response = None
            problems = judge.match_status(
                expect.code,
                expect.message_contains,
                result.status.code,
                result.status.message,
                CODE_NAMES,
                step.method,
            )
            if result.status.code == 0:
                try:
                    response = messages.message_class(method.output_type).FromString(
                        result.response
                    )
                except Exception as exc:
                    problems.append(f"the response does not parse: {exc}")
            elif result.response:
                problems.append("a failed call reported a response body")
            if response is not None and wanted_response is not None:
                problems += judge.match_message(wanted_response, response, "response")
            headers = {h.key: h.value for h in result.headers}
            trailers = {h.key: h.value for h in result.trailers}
            if expect.headers:
                problems += judge.match_headers(
                    scope.bindings.resolve(dict(expect.headers)), headers, "headers"
                )
            if expect.trailers:
                problems += judge.match_headers(
                    scope.bindings.resolve(dict(expect.trailers)), trailers, "trailers"
                )
            if expect.within_ms is not None and elapsed_ms > expect.within_ms:
                problems.append(f"took {elapsed_ms:.0f} ms, more than {expect.within_ms} ms")
            if step.record:
                self.transcript.add(
                    Record(
                        at=step.where,
                        client=instance.partition("@")[0],
                        kind="unary",
                        code=CODE_NAMES.get(result.status.code, str(result.status.code)),
                        message=result.status.message,
                        transport=instance in self.refused,
                        response=response,
                        trailers=trailers,
                        unordered=scope.unordered,
                    )
                )
            self._fail(step, who, problems)
            if step.capture and response is not None:
                scope.bindings.bind(step.capture, response)

        await self._each(self._instances(step.client), one)

    async def _open(self, step: c.Open, scope: _Scope) -> None:
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
        for instance, language, executor in self._instances(step.client):
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
        self.streams[step.stream] = handles
        if step.wait_headers:
            expected = scope.bindings.resolve(dict(step.headers)) if step.headers else None
            await self._each(handles, lambda h: self._await_live(step, h, expected, scope))

    async def _await_live(
        self,
        step: c.Step,
        handle: StreamHandle,
        expected: dict[str, str] | None,
        scope: _Scope,
    ) -> None:
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
        self._fail(step, f"{handle.instance}/{handle.language}", problems)

    async def _send(self, step: c.Send, scope: _Scope) -> None:
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
                self._fail(step, handle.instance, [f"the executor answered {_short(answer)}"])
            if (
                isinstance(message, pb.TaskEventStreamRequest)
                and message.WhichOneof("request") == "subscribe"
                and handle.subscription is None
            ):
                handle.subscription = message.subscribe
            if step.wait_headers:
                await self._await_live(step, handle, None, scope)

        await self._each(self.streams[step.stream], one)

    async def _close_send(self, step: c.CloseSend, scope: _Scope) -> None:
        async def one(handle: StreamHandle) -> None:
            answer = await handle.executor.request(
                ANSWER_SLACK_S, stream_close_send=hp.StreamCloseSend(stream=handle.state.name)
            )
            if answer.WhichOneof("result") != "done" and handle.state.end is None:
                self._fail(step, handle.instance, [f"the executor answered {_short(answer)}"])

        await self._each(self.streams[step.stream], one)

    async def _cancel(self, step: c.Cancel, scope: _Scope) -> None:
        async def one(handle: StreamHandle) -> None:
            # A stream the server already ended has nothing to cancel; judging
            # its end below says how it ended instead.
            if handle.state.end is None:
                answer = await handle.executor.request(
                    ANSWER_SLACK_S, stream_cancel=hp.StreamCancel(stream=handle.state.name)
                )
                if answer.WhichOneof("result") != "done":
                    self._fail(step, handle.instance, [f"the executor answered {_short(answer)}"])
            await self._judge_end(step, handle, c.Expect(code=step.code), None, scope)

        await self._each(self.streams[step.stream], one)

    async def _expect_events(self, step: c.ExpectEvents, scope: _Scope) -> None:
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
                why = f"; the stream ended: {_end_text(state.end)}" if state.end else ""
                problems.append(
                    f"expected {wanted} events within {step.within_ms} ms, got {len(got)}"
                    f"{why}: {_summaries(got)}"
                )
            elif extra and step.quiet_ms:
                # quiet_ms: 0 leaves later events to the next expect_events.
                problems.append(
                    f"unexpected event(s) within {step.quiet_ms} ms after the expected ones: "
                    f"{_summaries(extra)}"
                )
            if len(got) == wanted:
                problems += self._match_events(step, got, ordered, unordered, each)
            self.transcript.add(
                Record(
                    at=step.where,
                    client=handle.instance.partition("@")[0],
                    kind="events",
                    events=got,
                    unordered=scope.unordered or step.events is None,
                )
            )
            self._fail(step, f"{handle.label}/{handle.language}", problems)
            for name, index in step.capture.items():
                try:
                    scope.bindings.bind(name, got[index])
                except IndexError:
                    self._fail(step, handle.label, [f"capture {name}: no event {index}"])

        # Fanout instances capture in turn; the last one wins, and all must agree anyway.
        await self._each(self.streams[step.stream], one)

    @staticmethod
    def _match_events(
        step: c.ExpectEvents,
        got: list[pb.TaskEvent],
        ordered: list[Any] | None,
        unordered: list[Any] | None,
        each: Any,
    ) -> list[str]:
        problems: list[str] = []
        if ordered is not None:
            for index, (event, want) in enumerate(zip(got, ordered, strict=True)):
                found = judge.match_message(want, event, f"event[{index}]")
                if found:
                    problems += [*found, f"event[{index}] was {_summary(event)}"]
        if unordered is not None:
            left = list(range(len(got)))
            for index, want in enumerate(unordered):
                hit = next((i for i in left if not judge.match_message(want, got[i])), None)
                if hit is None:
                    problems.append(
                        f"no event matches unordered[{index}] {judge.show(want)} among "
                        f"{_summaries([got[i] for i in left])}"
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

    async def _expect_end(self, step: c.ExpectEnd, scope: _Scope) -> None:
        await self._each(
            self.streams[step.stream],
            lambda h: self._judge_end(step, h, step.expect, step.capture, scope),
        )

    async def _judge_end(
        self,
        step: c.Step,
        handle: StreamHandle,
        expect: c.Expect,
        capture: str | None,
        scope: _Scope,
    ) -> None:
        state = handle.state
        within = (expect.within_ms or c.DEFAULT_WITHIN_MS) / 1000
        ended = await state.wait_for(lambda: state.end is not None or bool(state.errors), within)
        problems = list(state.errors)
        handle.end_judged = True
        unclaimed = handle.unclaimed()
        if unclaimed and not handle.unchecked:
            problems.append(f"events arrived that no step expected: {_summaries(unclaimed)}")
            handle.claimed = len(state.received)
        if not ended or state.end is None:
            problems.append(f"the stream did not end within {within * 1000:.0f} ms")
            self._fail(step, f"{handle.label}/{handle.language}", problems)
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
                transport=handle.instance in self.refused,
                trailers=trailers,
                unordered=scope.unordered,
            )
        )
        self._fail(step, f"{handle.label}/{handle.language}", problems)
        if capture:
            scope.bindings.bind(
                capture, {"code": code, "message": end.status.message, "trailers": trailers}
            )

    async def _expect_quiet(self, step: c.ExpectQuiet, scope: _Scope) -> None:
        await asyncio.sleep(step.ms / 1000)
        for handle in self.streams[step.stream]:
            extra = handle.unclaimed()
            handle.claimed = len(handle.state.received)
            problems = list(handle.state.errors)
            if extra:
                problems.append(f"expected no events for {step.ms} ms, got {_summaries(extra)}")
            self._fail(step, f"{handle.label}/{handle.language}", problems)

    async def _expect_same(self, step: c.ExpectSame, scope: _Scope) -> None:
        handles = [h for name in step.streams for h in self.streams[name]]
        first = handles[0]
        reference = [messages.to_plain(r.event) for r in first.state.received]
        for handle in handles[1:]:
            seen = [messages.to_plain(r.event) for r in handle.state.received]
            if seen != reference:
                self._fail(
                    step,
                    handle.label,
                    [_difference(first.label, reference, handle.label, seen)],
                )

    async def _sleep(self, step: c.Sleep, scope: _Scope) -> None:
        await asyncio.sleep(step.ms / 1000)

    async def _server(self, step: c.Server, scope: _Scope) -> None:
        assert self.server is not None
        # With replicas, the one serving the case's last role.
        target = self.server.replica_for(len(self.case.roles) - 1)
        if step.action in ("stop", "restart"):
            await asyncio.to_thread(target.stop)
        if step.action in ("start", "restart"):
            await asyncio.to_thread(target.start)
            await self._connect_all()

    async def _discover(self, step: c.Discover, scope: _Scope) -> None:
        # The runner's own calls: reflection and health are the server's, not a client's.
        assert self.server is not None
        credentials = (
            self.pki.channel_credentials()
            if self.pki is not None
            else self.target.security.channel_credentials()
        )
        problems: list[str] = []
        for host in step.hosts:
            problems += await asyncio.to_thread(
                discovery.check,
                discovery.target(host, self.server.port),
                credentials,
                messages.SERVICE,
                step.services,
                step.health,
            )
        self._fail(step, "runner", problems)

    async def _parallel(self, step: c.Parallel, scope: _Scope) -> None:
        inner = _Scope(scope.bindings, unordered=True)
        await _all(self._steps(branch, inner) for branch in step.branches)

    async def _repeat(self, step: c.Repeat, scope: _Scope) -> None:
        for index in range(1, step.times + 1):
            inner = _Scope(scope.bindings.child(**{step.var: index}), scope.unordered)
            await self._steps(step.steps, inner)

    # --- the checks every run gets -------------------------------------------

    def _final_checks(self) -> list[str]:
        problems: list[str] = []
        for name, handles in self.streams.items():
            for handle in handles:
                problems += self._stream_checks(handle)
            problems += self._fanout_agreement(name, handles)
        return problems

    def _stream_checks(self, handle: StreamHandle) -> list[str]:
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
                f"{label}: events arrived that no step expected: {_summaries(handle.unclaimed())}"
            )
        if state.end is not None and not handle.end_judged:
            problems.append(f"{label}: ended unexpectedly with {_end_text(state.end)}")
        return problems

    @staticmethod
    def _fanout_agreement(name: str, handles: list[StreamHandle]) -> list[str]:
        if len(handles) < 2:
            return []
        reference = [messages.to_plain(r.event) for r in handles[0].state.received]
        problems = []
        for handle in handles[1:]:
            seen = [messages.to_plain(r.event) for r in handle.state.received]
            if seen != reference:
                problems.append(
                    f"fanout stream {name}: "
                    + _difference(handles[0].label, reference, handle.label, seen)
                )
        return problems


# --- formatting ---------------------------------------------------------------------


def _short(observation: hp.Observation) -> str:
    kind = observation.WhichOneof("result")
    if kind == "executor_error":
        return f"ExecutorError: {observation.executor_error.message}"
    return str(kind)


def _summary(event: pb.TaskEvent) -> str:
    kind = messages.enum_name(pb.TaskEventType.DESCRIPTOR, event.event_type)
    kind = str(kind).removeprefix("TASK_EVENT_TYPE_")
    title = judge.show(event.task.title, 30)
    assignee = judge.show(event.task.assignee, 20) if event.task.HasField("assignee") else "-"
    return f"#{event.sequence} {kind} {title} assignee={assignee}"


def _summaries(events: Sequence[pb.TaskEvent], limit: int = 8) -> str:
    shown = [_summary(e) for e in events[:limit]]
    more = f" … and {len(events) - limit} more" if len(events) > limit else ""
    return "[" + "; ".join(shown) + more + "]"


def _end_text(end: hp.StreamEnd | None) -> str:
    if end is None:
        return "no end"
    code = CODE_NAMES.get(end.status.code, str(end.status.code))
    return f"{code}: {judge.show(end.status.message)}"


def _difference(
    left_name: str, left: list[dict[str, Any]], right_name: str, right: list[dict[str, Any]]
) -> str:
    for index, (a, b) in enumerate(zip(left, right, strict=False)):
        if a != b:
            return (
                f"{left_name} and {right_name} differ at event {index}: "
                f"{judge.show(a, 200)} vs {judge.show(b, 200)}"
            )
    return (
        f"{left_name} received {len(left)} events, {right_name} {len(right)}: "
        f"the shorter one is a prefix of the longer"
    )
