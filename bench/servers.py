"""The servers under test, each a child process: Rigger (`rig grpc`) or the ceiling."""

from __future__ import annotations

import pathlib
import sys

from conformance.serverproc import ServerProcess

CEILING_SCRIPT = pathlib.Path(__file__).with_name("ceiling_server.py")
KINDS = ("rigger", "ceiling")


def start(kind: str, root: pathlib.Path, buffer: int, workers: int = 1) -> ServerProcess:
    """Start a fresh server of `kind` in `root` (a new database for Rigger) and wait for health."""
    root.mkdir(parents=True, exist_ok=True)
    extra = ("--buffer", str(buffer))
    if kind == "rigger":
        return ServerProcess(root, extra_args=(*extra, "--workers", str(workers))).start()
    if kind == "ceiling":
        # ServerProcess runs `<command> grpc --port 0 --db ...`; the ceiling takes
        # the same arguments and prints the same banner.
        return ServerProcess(
            root, extra_args=extra, command=(sys.executable, str(CEILING_SCRIPT))
        ).start()
    raise ValueError(f"unknown server kind {kind!r}; expected one of {KINDS}")
