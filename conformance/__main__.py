"""`python -m conformance`: run the conformance suite (or its self-test) from the repo root.

    python -m conformance                       # every case, each client alone and every mix
    python -m conformance --client go           # only runs where go plays every role
    python -m conformance --client go --client python -k events
    python -m conformance --self-test           # the suite must fail against every mutant server
    python -m conformance --server-args='--workers 2'   # against `rig grpc --workers 2`
    python -m conformance --postgres --client python    # two replicas on PostgreSQL per run

Exit status: 0 when everything passed (known failures allowed), 1 when
something failed, 2 when the suite could not run (a bad case file, an
executor that cannot be built or started).
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence

from conformance import cases as c
from conformance import coverage, known_failing, mutant_server, replicas, report, selftest, suite
from conformance.executor import (
    BUILD_DIR,
    LANGUAGES,
    ExecutorPool,
    ExecutorUnavailable,
    build_commands,
)
from conformance.messages import SERVICE
from conformance.plan import plan, select
from conformance.runner import RunResult

SELF_TEST_WITHIN_MS = 3000


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m conformance",
        description="Rigger's cross-language conformance suite. See conformance/README.md.",
    )
    parser.add_argument(
        "--client",
        action="append",
        choices=LANGUAGES,
        help="run only with this client (repeatable; default: all of them, alone and mixed)",
    )
    parser.add_argument(
        "-k",
        dest="patterns",
        action="append",
        default=[],
        metavar="PATTERN",
        help="run only cases whose name contains PATTERN or matches it as a glob (repeatable)",
    )
    parser.add_argument("--jobs", type=int, default=2, help="case runs at once (default: 2)")
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="run against every mutant server and require a failure on each "
        "(default client: python)",
    )
    parser.add_argument(
        "--mutant",
        action="append",
        choices=sorted(mutant_server.MUTANTS),
        help="with --self-test: only this mutant (repeatable)",
    )
    parser.add_argument(
        "--server-args",
        type=shlex.split,
        default=[],
        metavar="'FLAGS'",
        help="extra `rig grpc` flags for every run's server, e.g. --server-args='--workers 2'",
    )
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="run every case against two `rig grpc` replicas on a throwaway PostgreSQL "
        "cluster, client roles alternating between them (see conformance/replicas.py)",
    )
    parser.add_argument("--list", action="store_true", help="list the planned runs and exit")
    parser.add_argument(
        "--report-dir",
        type=pathlib.Path,
        default=BUILD_DIR,
        help="where report.json and junit.xml go (default: build/conformance)",
    )
    return parser.parse_args(argv)


class Progress:
    """One character per finished run, like pytest's dots."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0

    def __call__(self, result: RunResult) -> None:
        """Report one finished run."""
        self.done += 1
        sys.stdout.write("." if result.passed else "F")
        if self.done % 80 == 0 or self.done == self.total:
            sys.stdout.write(f" {self.done}/{self.total}\n")
        sys.stdout.flush()


def _workdir(prefix: str) -> pathlib.Path:
    # One directory per invocation: suites started side by side (say, by
    # people working on different executors) must not delete each other's runs.
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    return pathlib.Path(tempfile.mkdtemp(prefix=prefix, dir=BUILD_DIR))


def _remove_if_empty(directory: pathlib.Path) -> None:
    # Passing runs delete their directories; failing ones stay for inspection.
    leftovers = [p for p in directory.rglob("*") if p.is_file()]
    if not leftovers:
        shutil.rmtree(directory, ignore_errors=True)
    else:
        print(f"kept the directories of failed runs in {directory}")


async def _start_pool(languages: Sequence[str]) -> ExecutorPool:
    pool = ExecutorPool(build_commands(tuple(languages)))
    try:
        for language in languages:
            await pool.probe(language)
    except ExecutorUnavailable:
        await pool.close()
        raise
    return pool


async def run_suite(args: argparse.Namespace, all_cases: list[c.Case]) -> int:
    """The normal mode: run, judge, report."""
    languages = tuple(sorted(args.client or LANGUAGES))
    chosen = select(all_cases, args.patterns)
    runs = plan(chosen, languages)
    entries = known_failing.load(languages)
    every_case = not args.patterns
    errors: list[str] = []
    if every_case:
        errors += coverage.check(
            SERVICE, all_cases, runs, languages, coverage.load_documented(), entries
        )
    if args.list:
        for run in runs:
            print(run.id)
        print(f"{len(chosen)} cases, {len(runs)} runs")
        return 0
    print(f"conformance: {len(chosen)} cases, {len(runs)} runs over {', '.join(languages)}")
    started = time.monotonic()
    pool = await _start_pool(languages)
    workdir = _workdir("runs-")
    try:
        with replicas.servers(args.postgres) as servers:
            results = await suite.execute(
                runs,
                pool,
                workdir,
                jobs=args.jobs,
                server_args=tuple(args.server_args),
                progress=Progress(len(runs)),
                servers=servers,
            )
    finally:
        await pool.close()
        _remove_if_empty(workdir)
    wall = time.monotonic() - started
    outcomes, stale = suite.verdicts(results, entries, every_case_selected=every_case)
    errors += stale + pool.complaints
    print()
    report.print_matrix(sys.stdout, outcomes, languages)
    report.print_failures(sys.stdout, outcomes)
    for error in errors:
        print(f"\n✗ {error}")
    report.write_json(args.report_dir / "report.json", outcomes, languages, errors, wall)
    report.write_junit(args.report_dir / "junit.xml", outcomes, errors)
    counts = report.summary(outcomes, languages)
    print(
        f"\n{counts[suite.PASSED]} passed, {counts[suite.FAILED]} failed, "
        f"{counts[suite.KNOWN]} known-failing, {len(errors)} suite errors "
        f"in {wall:.1f} s (wall); reports in {args.report_dir}/"
    )
    return 1 if counts[suite.FAILED] or errors else 0


async def run_self_test(args: argparse.Namespace, all_cases: list[c.Case]) -> int:
    """The self-test mode: some run must fail against every mutant, and pass on the real server."""
    languages = tuple(sorted(args.client or ["python"]))
    runs = plan(select(all_cases, args.patterns), languages)
    mutants = args.mutant or sorted(mutant_server.MUTANTS)
    record = args.report_dir / "selftest.json"
    previous = selftest.load_catches(record)
    workdir = _workdir("selftest-")
    started = time.monotonic()
    pool = await _start_pool(languages)
    print(f"self-test: {len(mutants)} mutants, up to {len(runs)} runs each")
    try:
        verdicts = []
        for mutant in mutants:
            # The run that caught this mutant last time goes first: usually
            # it catches it again at once.
            ordered = selftest.catcher_first(runs, previous.get(mutant))
            verdict = await selftest.check_mutant(mutant, ordered, pool, workdir, jobs=args.jobs)
            mark = "caught" if verdict.caught else "NOT CAUGHT"
            by = f" by {verdict.caught_by}: {verdict.first_problem[:150]}" if verdict.caught else ""
            print(f"  {mutant:<26} {mark}{by}")
            verdicts.append(verdict)
    finally:
        await pool.close()
        # Runs failing against mutants are the point; their directories are not.
        shutil.rmtree(workdir, ignore_errors=True)
    wall = time.monotonic() - started
    selftest.save(record, verdicts, wall)
    missed = [v.mutant for v in verdicts if not v.caught]
    if missed:
        print(f"\n✗ the suite passed against broken servers: {', '.join(missed)}")
        return 1
    print(f"\nself-test passed: every mutant was caught ({wall:.1f} s)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    if args.postgres and args.self_test:
        print("conformance: --postgres does not combine with --self-test", file=sys.stderr)
        return 2
    try:
        # Against mutants a lost event is the expected outcome, so the
        # self-test waits less for one; runs that fail only because they were
        # slow are checked against the real server and discarded.
        within = SELF_TEST_WITHIN_MS if args.self_test else c.DEFAULT_WITHIN_MS
        all_cases = c.load_cases(within_ms=within)
    except (c.CaseError, known_failing.KnownFailingError) as exc:
        print(f"conformance: bad case file: {exc}", file=sys.stderr)
        return 2
    try:
        mode = run_self_test if args.self_test else run_suite
        return asyncio.run(mode(args, all_cases))
    except ExecutorUnavailable as exc:
        print(f"conformance: an executor is unavailable:\n{exc}", file=sys.stderr)
        return 2
    except known_failing.KnownFailingError as exc:
        print(f"conformance: bad known-failing file: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
