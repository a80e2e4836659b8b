"""The conformance suite checks itself: it fails against broken servers and on missing coverage.

The full suite runs with `nox -s conformance` (`python -m conformance`); these
tests are the fast part: each mutant server against one case that must catch
it, and the coverage rules against doctored schemas and case sets.
"""

from __future__ import annotations

import asyncio
import pathlib
import subprocess
import sys
from typing import Any

import pytest

from conformance import cases as c
from conformance import cli as cli
from conformance.cases import load
from conformance.executors.launch import ExecutorUnavailable, build_commands
from conformance.executors.process import ExecutorPool
from conformance.selftest import mutants, search
from conformance.suite.execute import execute
from conformance.suite.plan import plan


@pytest.fixture(scope="module")
def all_cases() -> list[c.Case]:
    # A mutant that loses an event makes its case wait out the whole window
    # for it; a shorter one keeps these tests fast (the real server's events
    # arrive within milliseconds).
    return load.load_cases(within_ms=3000)


def case_named(cases: list[c.Case], name: str) -> c.Case:
    return next(case for case in cases if case.name == name)


# --- the suite fails against broken servers ----------------------------------------


async def _against_mutants(cases: list[c.Case], workdir: pathlib.Path) -> dict[str, Any]:
    """Each catching case on the real server, and each mutant against its case, six at a time."""
    pool = ExecutorPool(build_commands(("python",)))
    # Most of a run is waiting (on server start, or on a window a lossy
    # mutant must wait out), so more at once than there are cores.
    slots = asyncio.Semaphore(6)
    catchers = sorted({m.caught_by for m in mutants.MUTANTS.values()})

    async def one(name: str, case: str, command: tuple[str, ...] | None) -> tuple[str, Any]:
        runs = plan([case_named(cases, case)], ["python"])
        extra = {"server_command": command} if command else {}
        async with slots:
            [result] = await execute(runs, pool, workdir / name, **extra)
        return name, result

    try:
        found = await asyncio.gather(
            *(one(f"real-{case}", case, None) for case in catchers),
            *(one(name, m.caught_by, search.command(name)) for name, m in mutants.MUTANTS.items()),
        )
    finally:
        await pool.close()
    return dict(found)


@pytest.fixture(scope="module")
def against_mutants(all_cases, tmp_path_factory) -> dict[str, Any]:
    return asyncio.run(_against_mutants(all_cases, tmp_path_factory.mktemp("mutants")))


def test_every_mutants_patch_still_fits_the_server():
    # A patch whose target moved would make the server fail to start, and
    # every case fail against it: that must not pass for a caught mutant.
    command = search.command(sorted(mutants.MUTANTS)[0])[:-2]
    names = [arg for name in sorted(mutants.MUTANTS) for arg in ("--mutant", name)]
    done = subprocess.run(
        [*command, *names, "--apply-only"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("mutant", sorted(mutants.MUTANTS))
def test_the_suite_fails_against_the_mutant(mutant, against_mutants):
    case = mutants.MUTANTS[mutant].caught_by
    real, broken = against_mutants[f"real-{case}"], against_mutants[mutant]
    assert real.passed, f"{case} fails on the real server:\n{real.problems}"
    assert not broken.passed, f"{case} passed against the {mutant} mutant"


# --- coverage is enforced from the schema ------------------------------------------


# --- verdicts --------------------------------------------------------------------------


async def test_an_executor_that_does_not_start_is_reported_clearly():
    pool = ExecutorPool({"python": [sys.executable, "-c", "import sys; sys.exit(3)"]})
    with pytest.raises(ExecutorUnavailable, match=r"python: the executor .* did not start"):
        await pool.probe("python")
    await pool.close()


# --- a case's paths stay inside its run's directory ------------------------------
#
# The runner starts the server in <run>/project and writes the case's files
# there; a case is input, so nothing it names may reach beyond <run>.
