"""The old server: the newest release tag, or proto/released/SERVER_REF, built into a venv."""

from __future__ import annotations

import io
import pathlib
import shutil
import subprocess
import sys
import tarfile

from conformance.executors.launch import REPO
from conformance.skew.steps import SKEW_DIR, SkewError, run_step

SERVER_REF_FILE = REPO / "proto" / "released" / "SERVER_REF"


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
    run_step(
        [sys.executable, "-m", "venv", str(base / "venv")], REPO, "creating the old server's venv"
    )
    run_step(
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


BATCHES_RPC = "rpc SubscribeToTaskEventBatches"
CONTRACT = "proto/rigger/v1/rigger.proto"


def pre_batches_ref() -> tuple[str | None, str]:
    """(the parent of the commit that added the batched stream, how) or (None, why not)."""
    if _git("rev-parse", "--is-shallow-repository").stdout.strip() == "true":
        _git("fetch", "--quiet", "--unshallow")
    found = _git("log", "--reverse", "--format=%H", "-S", BATCHES_RPC, "--", CONTRACT)
    commits = found.stdout.split()
    if not commits:
        return None, f"no commit in this clone adds {BATCHES_RPC!r} to {CONTRACT}"
    return f"{commits[0]}^", f"the parent of {commits[0][:12]}, which added the batched stream"
