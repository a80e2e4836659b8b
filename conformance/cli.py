"""`python -m conformance`: run the conformance suite (or its self-test) from the repo root.

    python -m conformance                       # every case, each client alone and every mix
    python -m conformance --client go           # only runs where go plays every role
    python -m conformance --client go --client python -k events
    python -m conformance --self-test           # the suite must fail against every mutant server
    python -m conformance --server-args='--workers 2'   # against `rig grpc --workers 2`
    python -m conformance --check -k my_new_case        # schema and coverage only, nothing runs
    python -m conformance --postgres --client python    # two replicas on PostgreSQL per run
    python -m conformance --target 127.0.0.1:50051      # a server already running (shared)
    python -m conformance --target-cmd './my-server --port {port} --data {dir}'   # one per run

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
from conformance import sources
from conformance.cases import coverage, load, schema
from conformance.cases.messages import SERVICE
from conformance.executors.launch import BUILD_DIR, LANGUAGES, ExecutorUnavailable, build_commands
from conformance.executors.process import ExecutorPool
from conformance.runner.case_run import RunResult
from conformance.selftest import search as selftest
from conformance.skew import clients as old_clients
from conformance.suite import known_failing, report, verdicts
from conformance.suite.execute import execute
from conformance.suite.plan import Run, plan, select
from conformance.targets import capabilities, profiles, target
from testkit import replicas

SELF_TEST_WITHIN_MS = 3000
# Where a run with -k reports by default, so it never overwrites the full report.
PARTIAL = "partial"
# Where runs against --target or --target-cmd report by default.
TARGET = "target"
FAILED_RUNS = "failed-runs"


def plural(count: int, word: str) -> str:
    """`1 case`, `2 cases`."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="rigger-conformance" if sources.INSTALLED else "python -m conformance",
        description="Rigger's cross-language conformance verdicts. See conformance/README.md.",
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
        metavar="NAME",
        help="with --self-test: only this mutant (repeatable; conformance/README.md lists them)",
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
        "cluster, client roles alternating between them (see testkit/replicas.py)",
    )
    parser.add_argument(
        "--list",
        action="store_true",
        help="list the planned runs, then how many cases and runs there are, and exit",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="run nothing: check the case files against the schema, the suite's coverage, "
        "and what the cases chosen with -k add to it",
    )
    parser.add_argument(
        "--report-dir",
        type=pathlib.Path,
        default=None,
        help="where report.json, junit.xml and the failed runs' directories go "
        f"(default: build/conformance, build/conformance/{TARGET} with --target or "
        f"--target-cmd; its {PARTIAL}/ with -k)",
    )
    target.add_arguments(parser)
    parser.add_argument(
        "--known-failing-also",
        type=pathlib.Path,
        metavar="DIR",
        help="more known-failing lists (DIR/<client>.yaml) beside conformance/known_failing/, "
        "e.g. for what an older server is known to get wrong",
    )
    parser.add_argument(
        "--client-gen",
        choices=("head", *old_clients.OLD_SCHEMAS),
        default="head",
        help="build the executors against clients generated from this contract: head "
        "(clients/*/gen) or a release (build/skew/, `python -m conformance.skew --prepare`)",
    )
    parser.add_argument(
        "--alone",
        action="store_true",
        help="only the runs where one language plays every role (no cross-language mixes)",
    )
    args = parser.parse_args(argv)
    if args.mutant:
        # Named only with --self-test, which needs the server to make the mutants.
        unknown = sorted(set(args.mutant) - set(selftest.catalogue()))
        if unknown:
            parser.error(f"--mutant: no mutant named {', '.join(unknown)}")
    if args.report_dir is None:
        # Another server's report never replaces our own server's.
        base = BUILD_DIR / TARGET if args.target or args.target_cmd else BUILD_DIR
        args.report_dir = base / PARTIAL if args.patterns else base
    return args


class Progress:
    """One character per finished run, like pytest's dots: `.` passed, `F` failed, `~` known."""

    def __init__(self, total: int, entries: Sequence[known_failing.Entry]) -> None:
        self.total = total
        self.done = 0
        self.entries = entries

    def __call__(self, result: RunResult) -> None:
        """Report one finished run."""
        self.done += 1
        if result.passed:
            mark = "."
        elif known_failing.listing(result.run, self.entries):
            mark = report.MARKS[verdicts.KNOWN]
        else:
            mark = "F"
        sys.stdout.write(mark)
        if self.done % 80 == 0 or self.done == self.total:
            sys.stdout.write(f" {self.done}/{self.total}\n")
        sys.stdout.flush()


def _workdir(prefix: str) -> pathlib.Path:
    # One scratch directory per invocation: suites started side by side (say,
    # by people working on different executors) must not delete each other's runs.
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    return pathlib.Path(tempfile.mkdtemp(prefix=prefix, dir=BUILD_DIR))


def _keep_failed_runs(outcomes: Sequence[verdicts.Outcome], target: pathlib.Path) -> str:
    """Move the directories of runs that did not pass to `target`, replacing the last ones.

    Only the latest invocation's are kept, so they cannot pile up. Returns
    a line saying what was kept, or "" when every run passed.
    """
    shutil.rmtree(target, ignore_errors=True)
    kept = {verdicts.FAILED: 0, verdicts.KNOWN: 0}
    for outcome in outcomes:
        directory = outcome.result.directory
        if outcome.outcome == verdicts.PASSED or directory is None or not directory.exists():
            continue
        target.mkdir(parents=True, exist_ok=True)
        shutil.move(directory, target / directory.name)
        kept[outcome.outcome] += 1
    if not any(kept.values()):
        return ""
    parts = [plural(kept[verdicts.FAILED], "failed run")] if kept[verdicts.FAILED] else []
    if kept[verdicts.KNOWN]:
        parts.append(plural(kept[verdicts.KNOWN], "known-failing run"))
    return f"the directories of {' and '.join(parts)} (database, server log) are in {target}/"


async def _start_pool(languages: Sequence[str], client_gen: str = "head") -> ExecutorPool:
    commands = (
        build_commands(tuple(languages))
        if client_gen == "head"
        else old_clients.build_commands(client_gen, tuple(languages))
    )
    pool = ExecutorPool(commands)
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
    if args.known_failing_also is not None:
        entries += known_failing.load(languages, args.known_failing_also)
    every_case = not args.patterns
    errors: list[str] = []
    if every_case:
        errors += coverage.check(
            SERVICE, all_cases, runs, languages, coverage.load_documented(), entries
        )
    if args.alone:
        runs = [run for run in runs if run.alone]
    counts_line = f"{plural(len(chosen), 'case')}, {plural(len(runs), 'run')}"
    if args.list:
        for run in runs:
            print(run.id)
        print(f"{counts_line} over {', '.join(languages)}")
        return 0
    if not runs:
        print(f"conformance: no case matches {' or '.join(args.patterns)}", file=sys.stderr)
        return 2
    chosen_target = target.from_args(args)
    if not args.postgres:
        return await _run_against(
            args, chosen_target, runs, entries, every_case, errors, counts_line
        )
    with replicas.on_a_cluster() as (servers, cluster):
        print(f"conformance: {replicas.REPLICAS} replicas per run on PostgreSQL ({cluster.url()})")
        # Each run's "server" is then two replicas on a fresh database.
        chosen_target = chosen_target.serving_with(
            servers, f"{replicas.REPLICAS} rig grpc replicas on PostgreSQL, started per run"
        )
        return await _run_against(
            args, chosen_target, runs, entries, every_case, errors, counts_line
        )


async def _run_against(
    args: argparse.Namespace,
    chosen_target: target.Target,
    runs: list[Run],
    entries: list[known_failing.Entry],
    every_case: bool,
    errors: list[str],
    counts_line: str,
) -> int:
    """Run the planned runs against `chosen_target`, judge and report them."""
    languages = tuple(sorted(args.client or LANGUAGES))
    clients = old_clients.client_schema(args.client_gen)
    workdir = _workdir(".runs-")
    try:
        profile = await asyncio.to_thread(
            profiles.learn, chosen_target, args.profile, tuple(args.server_args), workdir
        )
    except profiles.ProfileError as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        print(f"conformance: {chosen_target.description}: {exc}", file=sys.stderr)
        return 2
    runs, skipped = capabilities.partition(runs, profile, clients, chosen_target.grants(profile))
    jobs = 1 if chosen_target.shared else args.jobs
    print(f"conformance: {counts_line} over {', '.join(languages)}")
    print(f"  target: {chosen_target.description}" + (" (one run at a time)" * (jobs < args.jobs)))
    for line in profiles.describe(profile, clients):
        print(f"  {line}")
    if skipped:
        cases = {run.case.name for run in skipped}
        print(
            f"  {plural(len(skipped), 'run')} of {plural(len(cases), 'case')} skipped: "
            "the target lacks what they need (see the capability table)"
        )
    started = time.monotonic()
    try:
        pool = await _start_pool(languages, args.client_gen)
    except ExecutorUnavailable:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    try:
        results = await execute(
            runs,
            pool,
            workdir,
            jobs=jobs,
            server_args=tuple(args.server_args),
            progress=Progress(len(runs), entries),
            target=chosen_target,
            judged=capabilities.effective(profile, clients),
        )
        wall = time.monotonic() - started
        outcomes, stale = verdicts.verdicts(
            results, entries, every_case_selected=every_case, skipped=skipped
        )
        kept = _keep_failed_runs(outcomes, args.report_dir / FAILED_RUNS)
    finally:
        await pool.close()
        shutil.rmtree(workdir, ignore_errors=True)
    errors += stale + pool.complaints
    print()
    report.print_matrix(sys.stdout, outcomes, languages)
    report.print_known_failing(sys.stdout, outcomes)
    report.print_capabilities(sys.stdout, outcomes, languages)
    report.print_skipped_cases(sys.stdout, outcomes)
    report.print_failures(sys.stdout, outcomes)
    for error in errors:
        print(f"\n✗ {error}")
    report.write_json(
        args.report_dir / "report.json",
        outcomes,
        languages,
        errors,
        wall,
        target=profiles.report(chosen_target, profile, clients),
    )
    report.write_junit(args.report_dir / "junit.xml", outcomes, errors)
    counts = report.summary(outcomes, languages)
    if kept:
        print(f"\n{kept}")
    if chosen_target.shared:
        print(f"\n{_tidy_line(chosen_target, results)}")
    partial = " (a partial run: -k)" if args.patterns else ""
    print(
        f"\n{counts[verdicts.PASSED]} passed, {counts[verdicts.FAILED]} failed, "
        f"{counts[verdicts.KNOWN]} known-failing, {counts[verdicts.SKIPPED]} skipped, "
        f"{plural(len(errors), 'suite error')} "
        f"in {wall:.1f} s (wall); reports in {args.report_dir}/{partial}"
    )
    return 1 if counts[verdicts.FAILED] or errors else 0


def _tidy_line(chosen: target.Target, results: Sequence[RunResult]) -> str:
    """What the runs left on a shared server: archived, or kept with --keep."""
    tasks = plural(sum(r.tidied for r in results), "task")
    folder = f"{chosen.root / target.FILES_FOLDER}/" if chosen.root is not None else ""
    if chosen.keep:
        files = f" and their files under {folder}" if folder else ""
        return f"{chosen.description}: kept the {tasks} the runs created{files} (--keep)"
    removed = f", and removed their files under {folder}" if folder else ""
    return (
        f"{chosen.description}: archived the {tasks} the runs created (DeleteTask, each run's "
        f"as it ended){removed}; --keep leaves them"
    )


def run_check(args: argparse.Namespace, all_cases: list[c.Case]) -> int:
    """--check: nothing runs. The schema was checked on loading; now coverage, and what -k adds."""
    languages = tuple(sorted(args.client or LANGUAGES))
    files = {case.source.name for case in all_cases}
    print(
        f"schema: {plural(len(all_cases), 'case')} in {plural(len(files), 'file')} match "
        f"{schema.CASE_SCHEMA.name} ({schema.MESSAGES_SCHEMA.name} is up to date)"
    )
    entries = known_failing.load(languages)
    unmatched = known_failing.unmatched(entries, (case.name for case in all_cases))
    documented = coverage.load_documented()
    problems = coverage.check(
        SERVICE, all_cases, plan(all_cases, languages), languages, documented, entries
    )
    problems += [
        f"known_failing/{e.language}.yaml lists {e.pattern!r}, which matches no case"
        for e in unmatched
    ]
    if args.patterns:
        chosen = select(all_cases, args.patterns)
        if not chosen:
            print(f"no case matches {' or '.join(args.patterns)}", file=sys.stderr)
            return 2
        others = coverage.covered([case for case in all_cases if case not in chosen])
        for case in chosen:
            print(
                f"\n{case.name} ({case.source.name}): {plural(len(plan([case], languages)), 'run')}"
            )
            needs = [
                f"{n} ({case.because[n]})" if n in case.because else n
                for n in capabilities.requirements(case)
            ]
            print(f"  requires: {', '.join(needs) if needs else 'nothing beyond the core'}")
            for line in coverage.describe(case, others):
                print(f"  {line}")
    if problems:
        for problem in problems:
            print(f"\n✗ {problem}")
        print(f"\ncoverage: {plural(len(problems), 'problem')}")
        return 1
    print(f"\ncoverage: every method for {', '.join(languages)}, every documented code")
    return 0


async def run_self_test(args: argparse.Namespace, all_cases: list[c.Case]) -> int:
    """The self-test mode: some run must fail against every mutant, and pass on the real server."""
    languages = tuple(sorted(args.client or ["python"]))
    runs = plan(select(all_cases, args.patterns), languages)
    catalogue = selftest.catalogue()
    mutants = args.mutant or sorted(catalogue)
    record = args.report_dir / "selftest.json"
    previous = selftest.load_catches(record)
    chosen_target = target.from_args(args)
    workdir = _workdir(".selftest-")
    started = time.monotonic()
    try:
        # The mutants are our server with one promise broken: its profile is theirs.
        profile = await asyncio.to_thread(
            profiles.learn, target.own(), args.profile, tuple(args.server_args), workdir
        )
    except profiles.ProfileError as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        print(f"conformance: the self-test's profile probe: {exc}", file=sys.stderr)
        return 2
    clients = old_clients.client_schema(args.client_gen)
    runs, skipped = capabilities.partition(runs, profile, clients, chosen_target.grants())
    pool = await _start_pool(languages, args.client_gen)
    via = f" through {chosen_target.description}" if chosen_target.kind == "command" else ""
    print(
        f"self-test: {plural(len(mutants), 'mutant')}, up to {plural(len(runs), 'run')} each{via}"
        + (f" ({plural(len(skipped), 'run')} skipped: the target cannot run them)" * bool(skipped))
    )
    try:
        verdicts = []
        for mutant in mutants:
            # The run that caught this mutant last time goes first, then the
            # runs of the case named to catch it: usually one catches it at once.
            designated = catalogue[mutant].caught_by
            ordered = selftest.catcher_first(runs, previous.get(mutant), designated)
            template = chosen_target.template
            mutant_target = (
                target.Target(
                    "command",
                    chosen_target.description,
                    template=template.with_mutant(mutant),
                    security=chosen_target.security,
                )
                if template is not None
                else None
            )
            verdict = await selftest.check_mutant(
                mutant, ordered, pool, workdir, jobs=args.jobs, target=mutant_target
            )
            mark = "caught" if verdict.caught else "NOT CAUGHT"
            by = (
                f" by {verdict.caught_by}: "
                if verdict.caught
                else ": " * bool(verdict.first_problem)
            )
            by += verdict.first_problem[:150]
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
        all_cases = load.load_cases(within_ms=within)
    except (c.CaseError, known_failing.KnownFailingError) as exc:
        print(f"conformance: bad case file: {exc}", file=sys.stderr)
        return 2
    if args.check:
        try:
            return run_check(args, all_cases)
        except known_failing.KnownFailingError as exc:
            print(f"conformance: bad known-failing file: {exc}", file=sys.stderr)
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
    except target.TargetError as exc:
        print(f"conformance: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
