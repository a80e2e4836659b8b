"""A suite run: many case runs over a few workers, each in a directory of its own."""

from __future__ import annotations

import asyncio
import itertools
import pathlib
import re
import shutil
from collections.abc import Callable, Sequence

from conformance.executors.process import ExecutorPool
from conformance.runner.case_run import REAL_SERVER, CaseRun, RunResult
from conformance.suite.plan import Run
from conformance.targets.target import Target

_TAGS = itertools.count()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text)[:120]


async def execute(
    runs: Sequence[Run],
    pool: ExecutorPool,
    workdir: pathlib.Path,
    *,
    jobs: int = 2,
    server_command: tuple[str, ...] = REAL_SERVER,
    server_args: tuple[str, ...] = (),
    fail_fast: bool = False,
    progress: Callable[[RunResult], None] | None = None,
    target: Target | None = None,
    judged: frozenset[str] | None = None,
) -> list[RunResult]:
    """Run every run, at most `jobs` at a time; with fail_fast, start none after a failure.

    A run's directory (project, database, server log) is kept when it fails.
    `target` is where the server comes from (default: our own, `server_command`);
    `judged` the schema capabilities the runs are judged by (default: all).
    """
    semaphore = asyncio.Semaphore(jobs)
    # Stream names must never repeat on a reused executor, across calls too.
    first_tag = next(_TAGS)
    failed = asyncio.Event()
    results: list[RunResult | None] = [None] * len(runs)

    async def one(index: int, run: Run) -> None:
        async with semaphore:
            if fail_fast and failed.is_set():
                return
            directory = workdir / f"{index:04d}-{_slug(run.id)}"
            tag = f"r{first_tag}-{index}"
            result = await CaseRun(
                run,
                pool,
                directory,
                server_command=server_command,
                server_args=server_args,
                tag=tag,
                target=target,
                judged=judged,
            ).execute()
            results[index] = result
            if result.passed:
                shutil.rmtree(directory, ignore_errors=True)
            else:
                failed.set()
            if progress is not None:
                progress(result)

    await asyncio.gather(*(one(i, run) for i, run in enumerate(runs)))
    return [r for r in results if r is not None]
