"""`python -m bench [--quick] [--out DIR]`: run the fanout matrix against Rigger and the ceiling.

Writes report.json, report.md and plot.png into DIR (default build/bench).
Asserts nothing about timing: CI runs `--quick` only so the harness cannot rot.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import os
import pathlib
import platform
import sys
import tempfile
import time

from bench import fanout, matrix, plot, profiler, report


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="reduced matrix (N=10,100; 250 B) for CI, < 3 min"
    )
    parser.add_argument(
        "--batches",
        action="store_true",
        help="only saturation at 250 B, N=100 and 1000, plain stream beside the batched one",
    )
    parser.add_argument(
        "--out", type=pathlib.Path, default=pathlib.Path("build/bench"), help="report directory"
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    groups = matrix.batches() if args.batches else matrix.quick() if args.quick else matrix.full()
    if args.n:
        groups = [g for g in groups if g.n in args.n]
    if args.workers > 1:
        groups = matrix.with_workers(groups, args.workers)
    started = time.monotonic()
    profile_dir = args.out / "profile" if args.profile else None
    with tempfile.TemporaryDirectory(prefix="rigger-bench-", dir=args.db_dir) as workdir:
        results = asyncio.run(
            fanout.run(groups, pathlib.Path(workdir), profile_dir, args.wait_quiet)
        )
    if profile_dir is not None:
        for raw in sorted(profile_dir.glob("*.raw")):
            raw.with_suffix(".txt").write_text(profiler.summarize(raw))
    meta = {
        "mode": "batches" if args.batches else "quick" if args.quick else "full",
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "wall_seconds": round(time.monotonic() - started, 1),
        "machine": (
            f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        ),
        "saturation_writers": matrix.SATURATION_WRITERS,
        "workers": args.workers,
        "db_dir": str(args.db_dir or tempfile.gettempdir()),
    }
    report.write(args.out, results, meta)
    plot.write(args.out / "plot.png", results)
    print(f"wrote {args.out}/report.json, report.md, plot.png in {meta['wall_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
