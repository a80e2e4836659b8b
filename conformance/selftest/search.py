"""The suite's self-test: run it against deliberately broken servers; it must fail on each.

A suite that passes against a server that drops events or ignores filters
proves nothing. For every mutant (conformance/selftest/mutants.py) the selected
runs go against the mutant server, stopping at the first failure that the
real server does not share; the self-test fails when some mutant gets
through every run. Which run caught each mutant is recorded, and tried first
next time.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from conformance.executors.process import ExecutorPool
from conformance.suite.execute import execute
from conformance.suite.plan import Run
from conformance.targets.target import Target, own

if TYPE_CHECKING:
    from conformance.selftest.mutants import Mutant

MUTANTS_MODULE = "conformance.selftest.mutants"
# The directory holding the `conformance` package: mutant servers run in
# their project directories and must still import it.
_SUITE_PATH = str(pathlib.Path(__file__).resolve().parent.parent.parent)


def catalogue() -> Mapping[str, Mutant]:
    """Every mutant by name. Mutants are this checkout's server with one promise broken,
    so this needs the server (rigger_server) installed; the rest of the suite does not."""
    try:
        from conformance.selftest.mutants import MUTANTS
    except ImportError as exc:
        raise SystemExit(
            "conformance: --self-test runs the suite against deliberately broken copies of "
            "the Rigger server (its mutants), so it needs that server installed: "
            "`pip install <repository>` beside rigger-conformance, or run it from a checkout "
            f"(`nox -s conformance_selftest`). ({exc})"
        ) from None
    return MUTANTS


def command(mutant: str) -> tuple[str, ...]:
    """How to launch the server with a mutant (for ServerProcess(command=...)).

    `python -m conformance.selftest.mutants --mutant NAME`, with the suite
    put on PYTHONPATH: the server runs in its project directory.
    """
    path = os.pathsep.join(p for p in (_SUITE_PATH, os.environ.get("PYTHONPATH", "")) if p)
    return ("env", f"PYTHONPATH={path}", sys.executable, "-m", MUTANTS_MODULE, "--mutant", mutant)


def applies(mutant: str) -> str | None:
    """None when the mutant still fits the server's parts, else why not (runs a subprocess)."""
    done = subprocess.run(
        [*command(mutant), "--apply-only"], capture_output=True, text=True, check=False
    )
    return None if done.returncode == 0 else (done.stderr.strip() or f"exit {done.returncode}")


@dataclasses.dataclass
class MutantVerdict:
    """Whether the suite caught one mutant, and with which run."""

    mutant: str
    caught_by: str | None
    runs: int
    first_problem: str

    @property
    def caught(self) -> bool:
        """True when some run failed against the mutant."""
        return self.caught_by is not None


async def check_mutant(
    mutant: str,
    runs: Sequence[Run],
    pool: ExecutorPool,
    workdir: pathlib.Path,
    *,
    jobs: int = 2,
    target: Target | None = None,
) -> MutantVerdict:
    """Run against one mutant until some run fails, and fails only because of the mutant.

    A run that fails against the mutant must fail against it again and pass
    on the real server; otherwise it was flaky, proves nothing, and the
    search goes on with the runs not tried yet. `target` starts the mutant
    server (a `--target-cmd` with its `{mutant}` filled); by default it is
    started as our own server is.
    """
    target = target or own(command(mutant))
    broken = applies(mutant)
    if broken is not None:
        return MutantVerdict(mutant, None, 0, broken)
    remaining = list(runs)
    tried = 0
    attempt = 0
    while remaining:
        attempt += 1
        results = await execute(
            remaining,
            pool,
            workdir / f"{mutant}-{attempt}",
            jobs=jobs,
            target=target,
            fail_fast=True,
        )
        tried += len(results)
        done = {id(r.run) for r in results}
        remaining = [run for run in remaining if id(run) not in done]
        for failed in (r for r in results if not r.passed):
            if await _reproducible(mutant, failed.run, pool, workdir, target):
                problem = failed.problems[0].splitlines()[0]
                return MutantVerdict(mutant, failed.run.id, tried, problem)
    return MutantVerdict(mutant, None, tried, "")


async def check_all(
    mutants: Sequence[str],
    runs: Sequence[Run],
    pool: ExecutorPool,
    workdir: pathlib.Path,
    *,
    jobs: int = 2,
) -> list[MutantVerdict]:
    """Verdicts for every mutant, one after the other."""
    return [await check_mutant(m, runs, pool, workdir, jobs=jobs) for m in mutants]


async def _reproducible(
    mutant: str, run: Run, pool: ExecutorPool, workdir: pathlib.Path, target: Target
) -> bool:
    again = await execute([run], pool, workdir / f"{mutant}-again", target=target)
    real = await execute([run], pool, workdir / f"{mutant}-real")
    return bool(again) and not again[0].passed and bool(real) and real[0].passed


def catcher_first(runs: Sequence[Run], catcher: str | None, case: str | None = None) -> list[Run]:
    """The runs, the one named `catcher` (a run id) first, then those of the case named `case`."""
    return sorted(runs, key=lambda run: (run.id != catcher, run.case.name != case))


def load_catches(path: pathlib.Path) -> dict[str, str]:
    """mutant → the id of the run that caught it, from an earlier self-test's record."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        return {m["mutant"]: m["caught_by"] for m in document["mutants"] if m["caught_by"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def save(path: pathlib.Path, verdicts: Sequence[MutantVerdict], wall_s: float) -> None:
    """Record the verdicts (build/conformance/selftest.json)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "mutants": [
            {
                "mutant": v.mutant,
                "caught_by": v.caught_by,
                "runs": v.runs,
                "first_problem": v.first_problem,
            }
            for v in verdicts
        ],
        "wall_time_s": round(wall_s, 1),
    }
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
