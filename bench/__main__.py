"""`python -m bench [--quick] [--out DIR]`: the fanout matrix against Rigger and two ceilings.

Writes report.json, report.md and plot.png into DIR (default build/bench).
A report, not a test: it asserts nothing about timing, and CI runs `--quick`
only so the harness cannot rot. `--target HOST:PORT` load-tests a rigger.v1
server that is already running instead.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import pathlib
import platform
import resource
import sys
import tempfile
import time
from typing import Any

from bench import binaries, fanout, matrix, plot, probe, profiler, report, scaling, servers
from bench.writer import TitleIgnored

log = logging.getLogger("bench")
OUT = pathlib.Path("build/bench")
TARGET_OUT = OUT / "target"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="reduced matrix for CI (N=10, 100, and the N=1000 probe cell; 250 B), < 3 min",
    )
    parser.add_argument(
        "--batches",
        action="store_true",
        help="only saturation at 250 B, N=100 and 1000, plain stream beside the batched one",
    )
    parser.add_argument(
        "--out",
        type=pathlib.Path,
        default=None,
        help=f"report directory (default: {OUT}, and {TARGET_OUT} with --target, so a load "
        "test of another server never replaces the last full run's report)",
    )
    parser.add_argument(
        "--db-dir",
        type=pathlib.Path,
        help="where the servers' databases go (default: a temporary directory); "
        "a tmpfs such as /dev/shm takes the disk's fsync out of the measurement",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each group, wait up to this long for other jobs on the machine to go idle",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record the Rigger server with py-spy per group; summaries go to OUT/profile/",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="run Rigger as `rig grpc --workers N` in every group (default: 1; "
        "--quick has one 2-worker group either way)",
    )
    parser.add_argument(
        "--n",
        type=int,
        action="append",
        help="only the groups with this many subscribers (repeatable)",
    )
    parser.add_argument(
        "--pool",
        choices=("auto", "go", "python"),
        default="auto",
        help="who holds the subscriber streams: the Go pool, Python processes, or "
        f"(auto, the default) Go from N={fanout.subscriber_pool.GO_FROM} up",
    )
    parser.add_argument(
        "--no-tonic",
        action="store_true",
        help="leave the tonic ceiling out (it is left out anyway when cargo is missing)",
    )
    parser.add_argument(
        "--db",
        choices=("postgresql",),
        help="instead of the matrix: Rigger as 1, 2 and 4 replicas on a throwaway PostgreSQL "
        "beside one and two SQLite servers on one file (writes/s, delivered/s, and how fast "
        "an event crosses from one server to another's subscribers); report-scaling.md",
    )
    target = parser.add_argument_group("load-testing a running server")
    target.add_argument(
        "--target",
        metavar="HOST:PORT",
        help="load-test this running rigger.v1 server (plaintext) instead of starting servers; "
        "reports delivered/s and latency, no ceiling ratio",
    )
    target.add_argument(
        "--add-only",
        action="store_true",
        help="write with AddTask only (for a server without UpdateTaskRequest.title and "
        "without server reflection to tell)",
    )
    target.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --target that is not on this machine (a load test is a decision)",
    )
    return parser


def raise_open_files() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard one; children inherit it. Returns (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def _groups(args: argparse.Namespace, meta: dict[str, Any]) -> tuple[list[matrix.Group], bool]:
    """The groups to run and whether the writer only adds; fills in what it learnt."""
    if args.target is None:
        groups = (
            matrix.batches() if args.batches else matrix.quick() if args.quick else matrix.full()
        )
        return groups, False
    if not servers.is_loopback(args.target) and not args.allow_remote:
        raise SystemExit(
            f"--target {args.target} is not on this machine; add --allow-remote if you mean it"
        )
    caps = probe.capabilities(args.target)
    add_only = args.add_only or caps.title_update is False
    batches = caps.batches is True
    meta["target"] = {
        "address": args.target,
        "reflection": caps.reflection,
        "note": caps.note,
        "title_update": caps.title_update,
        "batches": caps.batches,
        "writer": "AddTask only" if add_only else "AddTask and UpdateTask(title)",
    }
    if caps.note:
        log.info("target: %s", caps.note)
    if not batches:
        log.info("target: no SubscribeToTaskEventBatches known; batched cells left out")
    return matrix.target(args.quick, batches), add_only


def _instruments(
    args: argparse.Namespace, groups: list[matrix.Group], add_only: bool, meta: dict[str, Any]
) -> tuple[fanout.Instruments, list[matrix.Group]]:
    """Build the helpers the groups need; leave out what cannot be had, and say so."""
    go_pool = None
    if args.pool != "python" and any(
        fanout.subscriber_pool.choose(args.pool, g.n, True) == "go" for g in groups
    ):
        built = binaries.go_pool()
        if built.path is None and args.pool == "go":
            raise SystemExit(f"--pool go: the Go subscriber pool cannot be built: {built.missing}")
        go_pool = built.path
        meta["go_pool"] = "built" if built.path else f"absent ({built.missing}): Python pool used"
        if built.path is None:
            log.warning(
                "Go subscriber pool absent (%s): the Python pool holds every N", built.missing
            )
    tonic = None
    if any(matrix.TONIC in g.kinds for g in groups):
        built = binaries.Built(None, "--no-tonic") if args.no_tonic else binaries.tonic_ceiling()
        tonic = built.path
        if built.path is None:
            meta["tonic"] = f"absent: {built.missing}"
            log.warning("tonic ceiling absent (%s): it is left out of this run", built.missing)
            groups = matrix.without(groups, matrix.TONIC)
        else:
            meta["tonic"] = "built"
    instruments = fanout.Instruments(args.pool, go_pool, tonic, args.target, add_only)
    return instruments, groups


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.out is None:
        args.out = TARGET_OUT if args.target else OUT
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    started = time.monotonic()
    # 10 000 streams over many connections, and the servers inherit the limit.
    soft, _ = raise_open_files()
    meta: dict[str, Any] = {
        "mode": "batches" if args.batches else "quick" if args.quick else "full",
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": (
            f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        ),
        "saturation_writers": matrix.SATURATION_WRITERS,
        "workers": args.workers,
        "pool": args.pool,
        "open_files_limit": soft,
        "db_dir": str(args.db_dir or tempfile.gettempdir()),
    }
    if args.target:
        meta["mode"] = f"target ({meta['mode'] if args.quick else 'full'})"
    if args.db == "postgresql":
        return _scaling(args, meta, started)
    try:
        groups, add_only = _groups(args, meta)
    except ConnectionError as exc:
        raise SystemExit(f"--target: {exc}") from None
    if args.n:
        groups = [g for g in groups if g.n in args.n]
    if args.workers > 1:
        groups = matrix.with_workers(groups, args.workers)
    instruments, groups = _instruments(args, groups, add_only, meta)
    profile_dir = args.out / "profile" if args.profile else None
    with tempfile.TemporaryDirectory(prefix="rigger-bench-", dir=args.db_dir) as workdir:
        try:
            results = asyncio.run(
                fanout.run(groups, pathlib.Path(workdir), instruments, profile_dir, args.wait_quiet)
            )
        except TitleIgnored as exc:
            raise SystemExit(f"--target {args.target}: {exc}") from None
    if profile_dir is not None:
        for raw in sorted(profile_dir.glob("*.raw")):
            raw.with_suffix(".txt").write_text(profiler.summarize(raw))
    meta["wall_seconds"] = round(time.monotonic() - started, 1)
    report.write(args.out, results, meta)
    plot.write(args.out / "plot.png", results)
    print(f"wrote {args.out}/report.json, report.md, plot.png in {meta['wall_seconds']:.0f} s")
    return 0


def _scaling(args: argparse.Namespace, meta: dict[str, Any], started: float) -> int:
    """`--db postgresql`: the many-servers setups, into report-scaling.{md,json}."""
    built = binaries.go_pool()
    if built.path is None:
        raise SystemExit(f"--db postgresql needs the Go subscriber pool: {built.missing}")
    with tempfile.TemporaryDirectory(prefix="rigger-bench-", dir=args.db_dir) as workdir:
        results = asyncio.run(scaling.run(pathlib.Path(workdir), built.path))
    meta["mode"] = "scaling"
    meta["wall_seconds"] = round(time.monotonic() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report-scaling.json").write_text(
        json.dumps({"meta": meta, "results": results}, indent=1) + "\n"
    )
    (args.out / "report-scaling.md").write_text(scaling.markdown(results))
    print(scaling.markdown(results))
    print(f"wrote {args.out}/report-scaling.json and .md in {meta['wall_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
