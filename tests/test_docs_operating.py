"""docs/operating.md's TLS, token and rotation commands work as written.

The blocks come in the doc's order: make a certificate and a token file,
serve with them, call the server, rotate with SIGHUP. The server's port is
the one change: it runs on a free one, and the calls are pointed at it.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys

import docblocks
import pytest

from testkit.serverproc import rig
from testkit.wait import wait_until

REPO = pathlib.Path(__file__).resolve().parent.parent
MAKE_FILES, SERVE, CALL, ROTATE = docblocks.run_by("docs/operating.md", __file__)


@pytest.fixture
def shell_env() -> dict[str, str]:
    """PATH with `rig` (beside this interpreter), grpcurl, openssl and jq."""
    grpcurl = shutil.which("grpcurl") or str(REPO / ".bin" / "grpcurl")
    if not pathlib.Path(grpcurl).exists():
        pytest.fail("grpcurl is not installed; `nox -s tests` installs it into .bin/")
    for tool in ("openssl", "jq"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed; docs/operating.md uses it")
    path = [pathlib.Path(sys.executable).parent, pathlib.Path(grpcurl).parent]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIGGER_")}
    env["PATH"] = os.pathsep.join([*map(str, path), env.get("PATH", "/usr/bin:/bin")])
    return env


def _bash(block: str, cwd: pathlib.Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", block],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_tls_token_and_rotation_commands_work(project, shell_env):
    assert rig("init", cwd=project).returncode == 0
    made = _bash(MAKE_FILES, project, shell_env)
    assert made.returncode == 0, made.stderr

    ready = project / ".rigger" / "ready.json"
    log = (project / "server.log").open("w")
    server = subprocess.Popen(
        ["bash", "-c", f"exec {SERVE.strip()} --port 0"],
        cwd=project,
        env=shell_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: server.poll() is not None or ready.exists(), "the ready file")
        assert server.poll() is None, (project / "server.log").read_text()
        port = json.loads(ready.read_text())["port"]
        env = {**shell_env, "RIGGER_ADDR": f"localhost:{port}"}  # where `rig list` looks
        call = CALL.replace("localhost:50051", f"localhost:{port}")

        called = _bash(call, project, env)
        assert called.returncode == 0, called.stderr
        assert "rigger.v1.RiggerService" in called.stdout
        assert "no tasks" in called.stdout

        # New files, then the doc's SIGHUP: new connections get the new
        # certificate and token; the old token is refused.
        old_token = (project / ".rigger" / "tokens.txt").read_text().strip()
        assert _bash(MAKE_FILES, project, shell_env).returncode == 0
        rotated = _bash(ROTATE, project, shell_env)
        assert rotated.returncode == 0, rotated.stderr
        wait_until(
            lambda: _bash(call, project, env).returncode == 0, "the new certificate and token"
        )
        refused = _bash(call.replace("$(head -n 1 .rigger/tokens.txt)", old_token), project, env)
        assert refused.returncode != 0
        assert "Unauthenticated" in refused.stderr
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        log.close()
