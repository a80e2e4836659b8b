"""Version skew: sidecars built for the first release against today's server, and
today's clients against the server users ran before this release cycle.

    python -m conformance.skew              # both halves (what `nox -s skew` runs)
    python -m conformance.skew --prepare    # only generate the old clients and build
    python -m conformance.skew --half old-clients   # or old-server

**Old clients, HEAD server.** The three clients are generated from the
released contract image (proto/released/rigger-v1.0.0.binpb) into
build/skew/v1.0/gen/ (never shipped, never committed: regenerated every
time), and each executor is built against that code instead of the
committed clients/*/gen:

- Python: the executor as is, with the old `rigger.v1` first on PYTHONPATH
  (`rigger` is a namespace package, so the old modules shadow the new).
- Go: the executor's module built with `-modfile`, whose `replace` points at
  a copy of clients/go holding the old generated code and the helper the
  executor uses (`rigger.Dial`, dial.go: it touches no generated code; the
  resuming watcher does, so it is left out).
- TypeScript: a copy of the built executor and client, with the client's
  compiled rigger_pb.js replaced by the old one.

The executors look methods and messages up in their generated code at run
time, so the same source serves both. The capability machinery
(conformance/capabilities.py) runs every case the old code can express: the
clients' schema is the v1.0 one, so cases that use `sequence`, `version`,
batches, `after_sequence`, `expected_version` or a title update are skipped.

**HEAD clients, old server.** The server is the newest `v*` tag, or else the
commit named in proto/released/SERVER_REF. Its tree is exported
(`git archive`) into build/skew/server-<commit>/src and installed into a
venv beside it; the suite then starts it per run with `--target-cmd` (it
writes no ready file) and runs every case its reflection says it supports.
A shallow clone is deepened (`git fetch --unshallow`, then the commit
itself); if the commit still cannot be had, this half is reported SKIPPED,
loudly, and the other half still runs.

Both halves run each language alone (`--alone`): the cross-language mixes
test the clients against each other, not against another version.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Sequence

from conformance.capabilities import HEAD, RELEASED_IMAGE, Schema
from conformance.executor import (
    BUILD_DIR,
    EXECUTORS,
    LANGUAGES,
    LAUNCHERS,
    REPO,
    ExecutorUnavailable,
)

SKEW_DIR = BUILD_DIR.parent / "skew"
TEMPLATE = REPO / "conformance" / "skew.buf.gen.yaml"
OLD_SCHEMAS = {"v1.0": RELEASED_IMAGE}
SERVER_REF_FILE = REPO / "proto" / "released" / "SERVER_REF"
# What the server of SERVER_REF is known to get wrong (fixed here since).
OLD_SERVER_KNOWN_FAILING = REPO / "conformance" / "known_failing" / "old-server"
# The server runs in its project directory ({dir}); its database goes there too.
SERVER_COMMAND = "{rig} grpc --port {{port}} --db {{dir}}/tasks.db {{args}}"


class SkewError(RuntimeError):
    """A step of the skew check that cannot be done; the message says why."""


def _run(command: Sequence[str], cwd: pathlib.Path, what: str) -> str:
    try:
        done = subprocess.run(list(command), cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise SkewError(f"{what}: {command[0]} is not installed") from None
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()[-4000:]
        raise SkewError(f"{what} failed ({' '.join(command)}):\n{output}")
    return done.stdout


# --- the old clients -------------------------------------------------------------------


def gen_dir(release: str) -> pathlib.Path:
    """Where the clients generated from a release's image live."""
    return SKEW_DIR / release / "gen"


def client_schema(name: str) -> Schema:
    """The schema the executors are built against: `head` or a release."""
    if name == "head":
        return HEAD
    return Schema.of_image(name, OLD_SCHEMAS[name])


def generate(release: str) -> pathlib.Path:
    """Generate the three clients from the release's image (buf and the clients' plugins)."""
    out = gen_dir(release)
    buf = shutil.which("buf")
    if buf is None:
        raise SkewError("generating the old clients needs `buf` (the codegen group: nox -s skew)")
    for plugin in (".bin/protoc-gen-go", ".bin/protoc-gen-go-grpc"):
        if not (REPO / plugin).exists():
            raise SkewError(f"{plugin} is missing: `nox -s codegen` (or nox -s skew) installs it")
    if not (REPO / "clients/ts/node_modules/.bin/protoc-gen-es").exists():
        raise SkewError("protoc-gen-es is missing: run `npm ci` in clients/ts")
    image = OLD_SCHEMAS[release]
    _run(
        [buf, "generate", str(image), "--template", str(TEMPLATE), "-o", str(out)],
        REPO,
        f"generating the {release} clients",
    )
    (out / "IMAGE.sha256").write_text(hashlib.sha256(image.read_bytes()).hexdigest() + "\n")
    return out


def _generated(release: str) -> pathlib.Path:
    out = gen_dir(release)
    stamp = out / "IMAGE.sha256"
    image = OLD_SCHEMAS[release]
    if (
        not stamp.is_file()
        or stamp.read_text().strip() != hashlib.sha256(image.read_bytes()).hexdigest()
    ):
        raise ExecutorUnavailable(
            f"the {release} clients are not generated (or are stale) in "
            f"{out.relative_to(REPO)}: run `python -m conformance.skew --prepare` (nox -s skew)"
        )
    return out


def _python(release: str) -> list[str]:
    gen = _generated(release) / "python"
    path = os.pathsep.join(p for p in (str(gen), os.environ.get("PYTHONPATH", "")) if p)
    # `env`: the executor process gets the old rigger.v1 first on its path.
    return ["env", f"PYTHONPATH={path}", sys.executable, "-m", "conformance.executors.python"]


def _go(release: str) -> list[str]:
    gen = _generated(release) / "go"
    go = shutil.which("go")
    if go is None:
        raise ExecutorUnavailable("the go executor needs `go` on PATH")
    base = SKEW_DIR / release / "go"
    client = base / "client"
    shutil.rmtree(client, ignore_errors=True)
    (client / "rigger").mkdir(parents=True)
    source = REPO / "clients" / "go"
    for name in ("go.mod", "go.sum"):
        shutil.copy2(source / name, client / name)
    # Only the helper the executor uses: Dial touches no generated code.
    shutil.copy2(source / "rigger" / "dial.go", client / "rigger" / "dial.go")
    shutil.copytree(gen / "rigger", client / "gen" / "rigger")
    modfile = base / "executor.mod"
    text = (EXECUTORS / "go" / "go.mod").read_text()
    replaced = text.replace("=> ../../../clients/go", f"=> {client}")
    if replaced == text:
        raise ExecutorUnavailable("conformance/executors/go/go.mod no longer replaces clients/go")
    modfile.write_text(replaced)
    shutil.copy2(EXECUTORS / "go" / "go.sum", base / "executor.sum")
    binary = SKEW_DIR / release / "bin" / "rigger-conformance"
    binary.parent.mkdir(parents=True, exist_ok=True)
    try:
        _run(
            [go, "build", f"-modfile={modfile}", "-o", str(binary), "."],
            EXECUTORS / "go",
            f"building the go executor against the {release} client",
        )
    except SkewError as exc:
        raise ExecutorUnavailable(str(exc)) from None
    return [str(binary)]


def _link(link: pathlib.Path, target: pathlib.Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target, target_is_directory=True)


def _ts(release: str) -> list[str]:
    gen = _generated(release) / "ts"
    node, _ = LAUNCHERS["ts"]()  # builds the HEAD client and executor, which get copied
    base = SKEW_DIR / release / "ts"
    shutil.rmtree(base, ignore_errors=True)
    client, executor = base / "client", base / "executor"
    head_client, head_executor = REPO / "clients" / "ts", EXECUTORS / "ts"
    shutil.copytree(head_client / "dist" / "src", client / "dist" / "src")
    shutil.copy2(head_client / "package.json", client / "package.json")
    old = gen / "rigger" / "v1" / "rigger_pb.js"
    (client / "dist" / "gen" / "rigger" / "v1").mkdir(parents=True)
    shutil.copy2(old, client / "dist" / "gen" / "rigger" / "v1" / "rigger_pb.js")
    _link(client / "node_modules", head_client / "node_modules")
    shutil.copytree(head_executor / "dist", executor / "dist")
    shutil.copy2(head_executor / "package.json", executor / "package.json")
    for scope in ("@bufbuild", "@connectrpc"):
        _link(executor / "node_modules" / scope, head_executor / "node_modules" / scope)
    _link(executor / "node_modules" / "@rigger-dev" / "client", client)
    return [node, str(executor / "dist" / "src" / "executor.js")]


SKEW_LAUNCHERS = {"go": _go, "python": _python, "ts": _ts}


def build_commands(release: str, languages: tuple[str, ...]) -> dict[str, list[str]]:
    """The executors built against a release's generated clients; ExecutorUnavailable if not."""
    commands: dict[str, list[str]] = {}
    problems: list[str] = []
    for language in languages:
        try:
            commands[language] = SKEW_LAUNCHERS[language](release)
        except ExecutorUnavailable as exc:
            problems.append(f"{language} ({release} clients): {exc}")
    if problems:
        raise ExecutorUnavailable("\n".join(problems))
    return commands


# --- the old server ---------------------------------------------------------------------


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)


def server_ref() -> tuple[str, str]:
    """(ref, where it came from): the newest v* tag, else proto/released/SERVER_REF."""
    tags = _git("tag", "--list", "v*", "--sort=-v:refname").stdout.split()
    if tags:
        return tags[0], f"the newest release tag, {tags[0]}"
    for line in SERVER_REF_FILE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return line, f"{SERVER_REF_FILE.relative_to(REPO)} (no v* tag yet)"
    raise SkewError(f"{SERVER_REF_FILE.relative_to(REPO)} names no commit")


def resolve(ref: str) -> tuple[str | None, str]:
    """(the full commit, what was done to get it) or (None, why it cannot be had)."""
    steps: list[str] = []

    def lookup() -> str | None:
        found = _git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        return found.stdout.strip() or None

    commit = lookup()

    def fetch(*args: str) -> None:
        done = _git("fetch", "--quiet", *args)
        said = done.stderr.strip().splitlines()
        outcome = "ok" if done.returncode == 0 else said[0] if said else f"exit {done.returncode}"
        steps.append(f"git fetch {' '.join(args)}: {outcome}")

    def shallow() -> bool:
        return _git("rev-parse", "--is-shallow-repository").stdout.strip() == "true"

    if commit is None and shallow():
        fetch("--unshallow")
        if shallow():
            steps.append("the clone is still shallow")
        commit = lookup()
    if commit is None:
        fetch("origin", ref)
        commit = lookup()
    if commit is None:
        return None, f"commit {ref} is not in this clone ({'; '.join(steps) or 'not found'})"
    return commit, "; ".join(steps)


def build_server(commit: str) -> pathlib.Path:
    """The old server's `rig`, installed from an export of the commit into its own venv."""
    base = SKEW_DIR / f"server-{commit[:12]}"
    rig = base / "venv" / "bin" / "rig"
    stamp = base / "INSTALLED"
    if rig.exists() and stamp.is_file() and stamp.read_text().strip() == commit:
        return rig
    shutil.rmtree(base, ignore_errors=True)
    source = base / "src"
    source.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit], cwd=REPO, capture_output=True, check=False
    )
    if archive.returncode != 0:
        raise SkewError(f"git archive {commit}: {archive.stderr.decode(errors='replace')}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(source, filter="data")
    _run([sys.executable, "-m", "venv", str(base / "venv")], REPO, "creating the old server's venv")
    _run(
        [
            str(base / "venv" / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            str(source),
        ],
        REPO,
        f"installing the server of {commit[:12]}",
    )
    if not rig.exists():
        raise SkewError(f"installing {commit[:12]} made no {rig.relative_to(REPO)}")
    stamp.write_text(commit + "\n")
    return rig


# --- the two halves ---------------------------------------------------------------------


def _suite(argv: list[str]) -> int:
    # Imported here: the suite's entry point imports this module for --client-gen.
    from conformance.__main__ import main as conformance_main

    print(f"\n$ python -m conformance {shlex.join(argv)}", flush=True)
    return conformance_main(argv)


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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: prepare, then run the halves asked for; 0 when every half that ran passed."""
    parser = argparse.ArgumentParser(
        prog="python -m conformance.skew", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--prepare", action="store_true", help="only generate and build")
    parser.add_argument("--half", choices=("old-clients", "old-server"), action="append")
    parser.add_argument("--release", choices=sorted(OLD_SCHEMAS), default="v1.0")
    parser.add_argument(
        "--client", action="append", choices=LANGUAGES, help="only these clients (repeatable)"
    )
    parser.add_argument("-k", dest="patterns", action="append", default=[], metavar="PATTERN")
    args = parser.parse_args(argv)
    halves = args.half or ["old-clients", "old-server"]
    extra = [f"--client={c}" for c in args.client or ()] + [f"-k{p}" for p in args.patterns]
    verdicts: dict[str, str] = {}
    try:
        if "old-clients" in halves:
            generate(args.release)
            print(f"skew: generated the {args.release} clients into {gen_dir(args.release)}")
        rig = None
        if "old-server" in halves:
            ref, origin = server_ref()
            commit, how = resolve(ref)
            if commit is None:
                verdicts["old-server"] = f"SKIPPED: {how}"
                print(f"\n!!! skew: the old server cannot be built: {how}", file=sys.stderr)
            else:
                rig = build_server(commit)
                fetched = f"; {how}" if how else ""
                print(f"skew: the old server is {commit[:12]} ({origin}){fetched}")
    except SkewError as exc:
        print(f"skew: {exc}", file=sys.stderr)
        return 2
    if args.prepare:
        return 0
    if "old-clients" in halves:
        code = old_clients(args.release, extra)
        verdicts["old-clients"] = {0: "passed", 1: "FAILED"}.get(code, f"could not run ({code})")
    if rig is not None:
        code = old_server(rig, extra)
        verdicts["old-server"] = {0: "passed", 1: "FAILED"}.get(code, f"could not run ({code})")
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
