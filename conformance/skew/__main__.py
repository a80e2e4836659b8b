"""`python -m conformance.skew`: the three halves of the version-skew check (see __init__.py)."""

from __future__ import annotations

import argparse
import json
import pathlib
import shlex
import sys
from collections.abc import Sequence

from conformance import cli
from conformance.executors.launch import LANGUAGES, REPO
from conformance.skew import clients as skew
from conformance.skew import sidecars
from conformance.skew.clients import OLD_SCHEMAS, gen_dir, generate
from conformance.skew.server import build_server, pre_batches_ref, resolve, server_ref
from conformance.skew.steps import SKEW_DIR, SkewError

# What the server of SERVER_REF is known to get wrong (fixed here since).
OLD_SERVER_KNOWN_FAILING = REPO / "conformance" / "known_failing" / "old-server"
# The server runs in its project directory ({dir}); its database goes there too.
SERVER_COMMAND = "{rig} grpc --port {{port}} --db {{dir}}/tasks.db {{args}}"
# The same server as a second implementation, started as an outsider would
# start theirs: a shell command line (the runner quotes the values for it).
SECOND_COMMAND = "cd {{dir}} && exec {rig} grpc --port {{port}} --db tasks.db {{args}}"
SECOND_REPORTS = cli.BUILD_DIR / "second"


def _suite(argv: list[str]) -> int:
    print(f"\n$ python -m conformance {shlex.join(argv)}", flush=True)
    return cli.main(argv)


def old_clients(release: str, extra: Sequence[str]) -> int:
    """The clients generated from `release` against this checkout's server."""
    return _suite(
        [
            "--client-gen",
            release,
            "--alone",
            "--report-dir",
            str(SKEW_DIR / "reports" / "old-clients"),
            *extra,
        ]
    )


def old_server(rig: pathlib.Path, extra: Sequence[str]) -> int:
    """This checkout's clients against the old server."""
    return _suite(
        [
            "--alone",
            "--target-cmd",
            SERVER_COMMAND.format(rig=rig),
            # Bugs of that server fixed since: known, so the half still passes.
            "--known-failing-also",
            str(OLD_SERVER_KNOWN_FAILING),
            "--report-dir",
            str(SKEW_DIR / "reports" / "old-server"),
            *extra,
        ]
    )


def second(rig: pathlib.Path, extra: Sequence[str]) -> int:
    """The old server as a second implementation: every case and client mix it can run."""
    return _suite(
        [
            "--target-cmd",
            SECOND_COMMAND.format(rig=shlex.quote(str(rig))),
            "--known-failing-also",
            str(OLD_SERVER_KNOWN_FAILING),
            "--report-dir",
            str(SECOND_REPORTS),
            *extra,
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: prepare, then run the halves asked for; 0 when every half that ran passed."""
    parser = argparse.ArgumentParser(
        prog="python -m conformance.skew", description=skew.__doc__.split("\n\n")[0]
    )
    parser.add_argument("--prepare", action="store_true", help="only generate and build")
    parser.add_argument(
        "--half",
        choices=("old-clients", "old-server", "sidecars", "second"),
        action="append",
        help="only this half (repeatable; default: old-clients, old-server, sidecars). "
        "`second`: the old server as a second implementation, through every client mix, "
        f"reported to {SECOND_REPORTS} (nox -s conformance_second)",
    )
    parser.add_argument("--release", choices=sorted(OLD_SCHEMAS), default="v1.0")
    parser.add_argument(
        "--client", action="append", choices=LANGUAGES, help="only these clients (repeatable)"
    )
    parser.add_argument("-k", dest="patterns", action="append", default=[], metavar="PATTERN")
    args = parser.parse_args(argv)
    halves = args.half or ["old-clients", "old-server", "sidecars"]
    extra = [f"--client={c}" for c in args.client or ()] + [f"-k{p}" for p in args.patterns]
    verdicts: dict[str, str] = {}
    try:
        if "old-clients" in halves:
            generate(args.release)
            print(f"skew: generated the {args.release} clients into {gen_dir(args.release)}")
        rig = None
        if {"old-server", "sidecars", "second"} & set(halves):
            ref, origin = server_ref()
            commit, how = resolve(ref)
            if commit is None:
                for half in {"old-server", "sidecars", "second"} & set(halves):
                    verdicts[half] = f"SKIPPED: {how}"
                print(f"\n!!! skew: the old server cannot be built: {how}", file=sys.stderr)
            else:
                rig = build_server(commit)
                fetched = f"; {how}" if how else ""
                print(f"skew: the old server is {commit[:12]} ({origin}){fetched}")
        pre_batches = None
        if "sidecars" in halves and rig is not None:
            found, origin = pre_batches_ref()
            commit, how = resolve(found) if found is not None else (None, origin)
            if commit is None:
                verdicts["sidecars"] = f"SKIPPED: {how}"
                print(f"\n!!! skew: no server without the batched stream: {how}", file=sys.stderr)
            else:
                pre_batches = build_server(commit)
                print(f"skew: the server without the batched stream is {commit[:12]} ({origin})")
    except SkewError as exc:
        print(f"skew: {exc}", file=sys.stderr)
        return 2
    if args.prepare:
        return 0
    if "old-clients" in halves:
        code = old_clients(args.release, extra)
        verdicts["old-clients"] = {0: "passed", 1: "FAILED"}.get(code, f"could not run ({code})")
    if rig is not None and "old-server" in halves:
        code = old_server(rig, extra)
        verdicts["old-server"] = {0: "passed", 1: "FAILED"}.get(code, f"could not run ({code})")
    if rig is not None and "second" in halves:
        code = second(rig, extra)
        verdicts["second"] = {0: "passed", 1: "FAILED"}.get(code, f"could not run ({code})")
    if rig is not None and pre_batches is not None:
        servers = [
            ("old-server", SERVER_COMMAND.format(rig=rig), True),
            ("pre-batches", SERVER_COMMAND.format(rig=pre_batches), False),
        ]
        try:
            code = sidecars.check(servers, args.client or LANGUAGES)
        except SkewError as exc:
            print(f"skew: {exc}", file=sys.stderr)
            code = 2
        verdicts["sidecars"] = {0: "passed", 1: "FAILED"}.get(code, f"could not run ({code})")
    print("\nskew:")
    for half, verdict in verdicts.items():
        print(f"  {half:<12} {verdict}")
    summary = SKEW_DIR / "reports" / "skew.json"
    summary.parent.mkdir(parents=True, exist_ok=True)
    summary.write_text(json.dumps(verdicts, indent=2) + "\n", encoding="utf-8")
    failed = [v for v in verdicts.values() if not (v == "passed" or v.startswith("SKIPPED"))]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
