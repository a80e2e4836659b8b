"""A running executor, and the pool of them: how the runner talks to one over the
size-delimited harness protocol.

An executor is reused across cases (a Connect points it at each case's fresh
server), because starting an interpreter per case would eat the time budget.
One executor serves one client of one case run at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
from collections.abc import Callable

from rigger.conformance.v1 import harness_pb2 as hp
from rigger.v1 import rigger_pb2 as pb

from conformance import sources
from conformance.executors.framing import encode_frame, read_frame
from conformance.executors.launch import STDERR_TAIL, ExecutorUnavailable

STARTUP_TIMEOUT_S = 20.0


class ExecutorDied(RuntimeError):
    """An executor exited, or broke the protocol, while the runner needed it."""


BATCHED_METHODS = frozenset({"SubscribeToTaskEventBatches"})


@dataclasses.dataclass
class Received:
    """One event as the runner got it (a batch's events each get one, with its receipt time)."""

    event: pb.TaskEvent
    received_ns: int


@dataclasses.dataclass
class StreamState:
    """Everything an executor reported about one stream, as it arrives."""

    name: str
    opened_ns: int
    headers: dict[str, str] | None = None
    received: list[Received] = dataclasses.field(default_factory=list)
    # Batched streams: events arrive as SubscribeToTaskEventBatchesResponse and
    # are flattened into `received`; the batch sizes are noted here only, so
    # transcripts and expectations see the same events as for the plain stream.
    batched: bool = False
    batch_sizes: list[int] = dataclasses.field(default_factory=list)
    end: hp.StreamEnd | None = None
    errors: list[str] = dataclasses.field(default_factory=list)
    changed: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    def notify(self) -> None:
        """Wake whoever waits for news on this stream."""
        self.changed.set()

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Wait until the predicate holds or the timeout passes; returns whether it holds."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)
        return True


class ExecutorProcess:
    """A running executor: send instructions, await their observations."""

    def __init__(self, language: str, command: list[str]) -> None:
        self.language = language
        self.command = command
        self._proc: asyncio.subprocess.Process | None = None
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[hp.Observation]] = {}
        self._stream_of: dict[int, StreamState] = {}
        self.streams: dict[str, StreamState] = {}
        self._stderr = bytearray()
        self._tasks: list[asyncio.Task[None]] = []
        self.died: str | None = None
        self.protocol_errors: list[str] = []

    async def start(self) -> ExecutorProcess:
        """Launch the process."""
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                # Where `python -m conformance...` finds the package (the checkout, or
                # site-packages): the directory `-m` puts first on the path, so nothing
                # where the suite was started (a `rigger/` clone, say) shadows it.
                cwd=sources.PACKAGE.parent,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                limit=64 * 1024 * 1024,
            )
        except OSError as exc:
            raise ExecutorUnavailable(f"{self.language}: cannot run {self.command}: {exc}") from exc
        self._tasks = [
            asyncio.ensure_future(self._read_observations()),
            asyncio.ensure_future(self._read_stderr()),
        ]
        return self

    @property
    def stderr_tail(self) -> str:
        """The last of what the executor wrote to stderr."""
        return self._stderr[-STDERR_TAIL:].decode("utf-8", "replace")

    @property
    def alive(self) -> bool:
        """True while the process runs and has kept to the protocol."""
        return self._proc is not None and self._proc.returncode is None and self.died is None

    def _send(self, instruction: hp.Instruction) -> None:
        if not self.alive or self._proc is None or self._proc.stdin is None:
            raise ExecutorDied(f"the {self.language} executor is not running: {self.died}")
        self._proc.stdin.write(encode_frame(instruction.SerializeToString()))

    def _instruction(self, **action: object) -> tuple[int, hp.Instruction]:
        self._next_id += 1
        return self._next_id, hp.Instruction(id=self._next_id, **action)  # type: ignore[arg-type,unused-ignore]

    async def request(self, timeout_s: float, **action: object) -> hp.Observation:
        """Send an instruction and wait for its answer (Done, UnaryResult or ExecutorError)."""
        iid, instruction = self._instruction(**action)
        future: asyncio.Future[hp.Observation] = asyncio.get_running_loop().create_future()
        self._pending[iid] = future
        self._send(instruction)
        assert self._proc is not None and self._proc.stdin is not None
        await self._proc.stdin.drain()
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            raise ExecutorDied(
                f"the {self.language} executor did not answer instruction {iid} "
                f"({next(iter(action))}) within {timeout_s:.0f} s"
            ) from None
        finally:
            self._pending.pop(iid, None)

    async def open_stream(self, name: str, action: hp.OpenStream) -> StreamState:
        """Start a stream; its observations collect in the returned state as they arrive."""
        iid, instruction = self._instruction(open_stream=action)
        state = StreamState(
            name=name, opened_ns=time.monotonic_ns(), batched=action.method in BATCHED_METHODS
        )
        self.streams[name] = state
        self._stream_of[iid] = state
        self._send(instruction)
        assert self._proc is not None and self._proc.stdin is not None
        await self._proc.stdin.drain()
        return state

    async def _read_observations(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        try:
            while True:
                frame = await read_frame(self._proc.stdout)
                if frame is None:
                    break
                self._route(hp.Observation.FromString(frame))
        except Exception as exc:
            self.died = f"broke the protocol: {exc}"
        await self._proc.wait()
        self.died = self.died or f"exited with code {self._proc.returncode}"
        message = f"the {self.language} executor {self.died}\n{self.stderr_tail}".rstrip()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ExecutorDied(message))
        for state in self.streams.values():
            if state.end is None:
                state.errors.append(message)
                state.notify()

    async def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        while chunk := await self._proc.stderr.read(65536):
            self._stderr.extend(chunk)
            del self._stderr[: -STDERR_TAIL * 4]

    def _route(self, observation: hp.Observation) -> None:
        iid = observation.instruction_id
        kind = observation.WhichOneof("result")
        state = self._stream_of.get(iid)
        if state is not None:
            self._route_stream(state, observation, kind)
            return
        future = self._pending.get(iid)
        if future is None or future.done():
            self.protocol_errors.append(f"unexpected {kind} for instruction {iid}")
            return
        future.set_result(observation)

    def _route_stream(
        self, state: StreamState, observation: hp.Observation, kind: str | None
    ) -> None:
        if kind == "stream_headers":
            state.headers = {h.key: h.value for h in observation.stream_headers.headers}
        elif kind == "stream_message":
            self._receive(state, observation.stream_message)
        elif kind == "stream_end":
            state.end = observation.stream_end
        elif kind == "executor_error":
            state.errors.append(observation.executor_error.message)
        elif kind != "done":  # Done for an opened stream carries nothing
            self.protocol_errors.append(f"unexpected {kind} on stream {state.name}")
        state.notify()

    @staticmethod
    def _receive(state: StreamState, message: hp.StreamMessage) -> None:
        at = message.received_monotonic_ns
        if not state.batched:
            try:
                event = pb.TaskEvent.FromString(message.message)
            except Exception as exc:
                state.errors.append(f"a message did not parse as a TaskEvent: {exc}")
            else:
                state.received.append(Received(event, at))
            return
        try:
            batch = pb.SubscribeToTaskEventBatchesResponse.FromString(message.message)
        except Exception as exc:
            state.errors.append(
                f"a message did not parse as a SubscribeToTaskEventBatchesResponse: {exc}"
            )
            return
        if not batch.events:
            state.errors.append(f"batch {len(state.batch_sizes)} is empty; a batch never is")
        state.batch_sizes.append(len(batch.events))
        state.received.extend(Received(event, at) for event in batch.events)

    def forget_streams(self) -> None:
        """Drop the record of finished streams before the executor serves another case."""
        self.streams.clear()
        self._stream_of.clear()

    async def shutdown(self, timeout_s: float = 10.0) -> str | None:
        """Send Shutdown and wait for exit; returns a complaint if it did not go cleanly."""
        if not self.alive:
            return None
        complaint = None
        try:
            answer = await self.request(timeout_s, shutdown=hp.Shutdown())
            if answer.WhichOneof("result") != "done":
                complaint = f"answered Shutdown with {answer.WhichOneof('result')}"
        except ExecutorDied as exc:
            complaint = str(exc)
        assert self._proc is not None
        try:
            code = await asyncio.wait_for(self._proc.wait(), timeout_s)
            if code != 0 and complaint is None:
                complaint = f"exited with code {code} after Shutdown"
        except TimeoutError:
            complaint = complaint or "did not exit after Shutdown"
            self.kill()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        return complaint

    def kill(self) -> None:
        """Kill the process (it misbehaved)."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()


class ExecutorPool:
    """Idle executors per language, started on demand and reused across case runs."""

    def __init__(self, commands: dict[str, list[str]]) -> None:
        self.commands = commands
        self._idle: dict[str, list[ExecutorProcess]] = {lang: [] for lang in commands}
        self._all: list[ExecutorProcess] = []
        self.complaints: list[str] = []

    async def acquire(self, language: str) -> ExecutorProcess:
        """An idle executor of the language, or a freshly started one."""
        idle = self._idle[language]
        while idle:
            executor = idle.pop()
            if executor.alive:
                return executor
        executor = await ExecutorProcess(language, self.commands[language]).start()
        self._all.append(executor)
        return executor

    def release(self, executor: ExecutorProcess, *, healthy: bool) -> None:
        """Return an executor after a case run; an unhealthy one is killed, not reused."""
        executor.forget_streams()
        if healthy and executor.alive and not executor.protocol_errors:
            self._idle[executor.language].append(executor)
        else:
            if executor.protocol_errors:
                self.complaints.append(
                    f"{executor.language} executor: {'; '.join(executor.protocol_errors[:3])}"
                )
            executor.kill()

    async def probe(self, language: str) -> None:
        """Start one executor and check it answers a Connect; ExecutorUnavailable if not."""
        executor = await self.acquire(language)
        try:
            # Channels connect lazily, so a Connect to a closed port just succeeds.
            answer = await executor.request(
                STARTUP_TIMEOUT_S, connect=hp.Connect(address="127.0.0.1:9")
            )
        except ExecutorDied as exc:
            raise ExecutorUnavailable(
                f"{language}: the executor ({' '.join(executor.command)}) did not start: {exc}"
            ) from None
        if answer.WhichOneof("result") != "done":
            raise ExecutorUnavailable(
                f"{language}: the executor answered Connect with {answer}".rstrip()
            )
        self.release(executor, healthy=True)

    async def close(self) -> None:
        """Shut every executor down; complaints about unclean exits are kept."""
        results = await asyncio.gather(*(e.shutdown() for e in self._all))
        for executor, complaint in zip(self._all, results, strict=True):
            if complaint:
                self.complaints.append(f"{executor.language} executor: {complaint}")
