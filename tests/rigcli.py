"""Running the `rig` client commands against a test server, as a user's shell would."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import subprocess
from collections.abc import Iterator
from typing import Any

from testkit.pki import RunSecurity
from testkit.serverproc import RIG, ServerProcess

TOKEN = "tok-a"


def env_for(server: ServerProcess, **extra: str) -> dict[str, str]:
    """The environment a user pointing `rig` at `server` has: $RIGGER_ADDR, nothing else."""
    env = {k: v for k, v in os.environ.items() if k not in ("RIGGER_ADDR", "RIGGER_TOKEN")}
    return {**env, "RIGGER_ADDR": server.address, "PYTHONUNBUFFERED": "1", **extra}


def rig(
    server: ServerProcess, *args: str, timeout: float = 60.0, **extra_env: str
) -> subprocess.CompletedProcess[str]:
    """`rig ARGS` run to completion in the server's project root."""
    return subprocess.run(
        [*RIG, *args],
        cwd=server.root,
        env=env_for(server, **extra_env),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        check=False,
    )


def rig_json(server: ServerProcess, *args: str, **extra_env: str) -> list[dict[str, Any]]:
    """The JSON objects `rig ARGS --json` prints, one per line; the command must succeed."""
    result = rig(server, *args, "--json", **extra_env)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


@contextlib.contextmanager
def guarded_server(
    directory: pathlib.Path, tls: str
) -> Iterator[tuple[ServerProcess, RunSecurity]]:
    """A server in `directory` that wants the token TOKEN, with TLS `none`, `server` or `mutual`."""
    pki = RunSecurity.create(directory / "pki", tls, (TOKEN,))
    root = directory / "project"
    root.mkdir()
    server = ServerProcess(
        root, extra_args=pki.server_args, credentials=pki.channel_credentials(), token=TOKEN
    ).start()
    try:
        yield server, pki
    finally:
        server.stop()
