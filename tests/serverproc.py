"""`rig` as a child process: a running server, or one command run to completion.

Importable by short names in tests.
"""

from __future__ import annotations

import pathlib
import subprocess

from conformance.serverproc import RIG, ServerProcess

__all__ = ["RIG", "ServerProcess", "rig"]


def rig(*args: str, cwd: pathlib.Path, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run `rig ARGS` to completion in `cwd`."""
    return subprocess.run(
        [*RIG, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
