"""One case run: a fresh server, an executor per client, the steps, then the judgement.

The runner drives executors and compares what they report against the case;
executors never judge. A run stops at its first failed step, then still checks
what the streams saw, cleans up, and returns every problem it found.

A run is three parts: its stage (stage.py: the directory, the server, the
connected clients), its streams (streams.py: opened on the executors, judged
as events arrive and once more at the end) and its transcript
(transcript.py: what the clients saw, for comparing runs). This module
carries out the steps in order and hands each to the part it acts on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from conformance import cases as c
from conformance.cases import messages
from conformance.cases.bindings import BindingError
from conformance.executors.process import ExecutorDied, ExecutorPool
from conformance.runner import unary
from conformance.runner.stage import Stage, write_files
from conformance.runner.steps import Scope, StepFailed, all_at_once, location
from conformance.runner.streams import Streams
from conformance.runner.transcript import Transcript, normalise
from conformance.suite.plan import Run
from conformance.targets.target import Target, own
from testkit.serverproc import RIG

REAL_SERVER = RIG

__all__ = ["REAL_SERVER", "CaseRun", "RunResult", "write_files"]


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
    # A shared server: the tasks the run left and archived (or kept, --keep).
    tidied: int = 0

    @property
    def passed(self) -> bool:
        """True when nothing went wrong."""
        return not self.problems


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
        # Where the server comes from (default: our own, with server_command).
        self.target = target or own(server_command)
        self.stage = Stage(run, pool, workdir, self.target, server_args)
        self.transcript = Transcript()
        self.streams = Streams(self.stage, self.transcript, tag, judged)
        self.problems: list[str] = []

    async def execute(self) -> RunResult:
        """Run the case and judge it; never raises for a failed expectation."""
        started = time.monotonic()
        try:
            await self.stage.setup()
            await self._steps(self.case.steps, Scope(self.stage.bindings()))
        except StepFailed as exc:
            self.problems.append(str(exc))
        except ExecutorDied as exc:
            self.problems.append(f"executor failure: {exc}")
        except Exception as exc:
            self.problems.append(f"runner error: {type(exc).__name__}: {exc}")
        if not self.problems:
            self.problems += self.streams.final_checks()
        self.problems += await self.stage.teardown(self.streams.all())
        log = self.stage.server_log() if self.problems else ""
        return RunResult(
            run=self.run,
            problems=self.problems,
            transcript=normalise(
                self.transcript,
                self.stage.replacements(),
                sequences=self.stage.sequences,
            ),
            duration_s=time.monotonic() - started,
            server_log=log,
            directory=self.stage.workdir,
            tidied=self.stage.tidied,
        )

    async def _steps(self, steps: Sequence[c.Step], scope: Scope) -> None:
        for step in steps:
            await self._step(step, scope)

    async def _step(self, step: c.Step, scope: Scope) -> None:
        streams, stage = self.streams, self.stage
        handlers: dict[type, Callable[[Any, Scope], Awaitable[None]]] = {
            c.Call: self._call,
            c.Open: streams.open,
            c.Send: streams.send,
            c.CloseSend: streams.close_send,
            c.Cancel: streams.cancel,
            c.ExpectEvents: streams.expect_events,
            c.ExpectEnd: streams.expect_end,
            c.ExpectQuiet: streams.expect_quiet,
            c.ExpectSame: streams.expect_same,
            c.Sleep: self._sleep,
            c.Server: stage.server_step,
            c.Connect: stage.connect,
            c.Parallel: self._parallel,
            c.Repeat: self._repeat,
            c.Discover: stage.discover,
        }
        try:
            await handlers[type(step)](step, scope)
        except (BindingError, messages.MessageError) as exc:
            raise StepFailed(f"{location(step)}: {exc}") from None

    async def _call(self, step: c.Call, scope: Scope) -> None:
        await unary.call(self.stage, self.transcript, step, scope)

    async def _sleep(self, step: c.Sleep, scope: Scope) -> None:
        await asyncio.sleep(step.ms / 1000)

    async def _parallel(self, step: c.Parallel, scope: Scope) -> None:
        inner = Scope(scope.bindings, unordered=True)
        await all_at_once(self._steps(branch, inner) for branch in step.branches)

    async def _repeat(self, step: c.Repeat, scope: Scope) -> None:
        for index in range(1, step.times + 1):
            inner = Scope(scope.bindings.child(**{step.var: index}), scope.unordered)
            await self._steps(step.steps, inner)
