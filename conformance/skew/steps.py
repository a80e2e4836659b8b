"""What both halves of the skew check share: where they build, and how a step fails."""

from __future__ import annotations

import pathlib
import subprocess
from collections.abc import Sequence

from conformance.executors.launch import BUILD_DIR

SKEW_DIR = BUILD_DIR.parent / "skew"


class SkewError(RuntimeError):
    """A step of the skew check that cannot be done; the message says why."""


def run_step(command: Sequence[str], cwd: pathlib.Path, what: str) -> str:
    """Run one step of the check; SkewError with its output when it fails."""
    try:
        done = subprocess.run(list(command), cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise SkewError(f"{what}: {command[0]} is not installed") from None
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()[-4000:]
        raise SkewError(f"{what} failed ({' '.join(command)}):\n{output}")
    return done.stdout
