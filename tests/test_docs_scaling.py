"""docs/scaling-out.md's local PostgreSQL recipe works as written, as root.

The blocks come in the doc's order: a cluster of its own and `rig init`, two
replicas, a sidecar given both, a write through each with the first replica
stopped in between, and the cluster stopped. What changes: the cluster's
directory and every port are fresh ones, so runs never meet.
"""

from __future__ import annotations

import os
import pathlib
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import uuid

import docblocks
import pytest

from testkit.wait import wait_until

CLUSTER, REPLICAS, SIDECAR, WRITES, STOP = docblocks.run_by("docs/scaling-out.md", __file__)

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def recipe_env() -> dict[str, str]:
    """Root, PostgreSQL's binaries and its user, as the recipe needs; `rig` on PATH."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (the recipe is the one for root)")
    if not list(pathlib.Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        missing.append("PostgreSQL in /usr/lib/postgresql (apt-get install postgresql)")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        missing.append("the postgres user")
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI runs the recipe; missing: {', '.join(missing)}")
        pytest.skip(f"needs {', '.join(missing)}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RIGGER_", "PG"))}
    env["PATH"] = f"{pathlib.Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    return env


def _lines(block: str) -> list[str]:
    """The block's commands, one per line, comments and continuations joined."""
    return [line for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def test_the_local_postgresql_recipe_serves_two_replicas_a_sidecar_fails_over(recipe_env):
    ports = {"5433": str(_free_port()), "50051": str(_free_port()), "50052": str(_free_port())}
    directory = f"/tmp/rigger-pg-doc-{uuid.uuid4().hex[:12]}"

    def ours(text: str) -> str:
        text = text.replace("/tmp/rigger-pg", directory)
        for documented, free in ports.items():
            text = text.replace(documented, free)
        return text

    def bash(block: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", ours(block)],
            env=recipe_env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    processes: list[subprocess.Popen] = []
    try:
        made = bash(CLUSTER)
        assert made.returncode == 0, f"{made.stdout}\n{made.stderr}"
        assert "Initialized" in made.stdout

        ready_files = []
        for i, command in enumerate(_lines(REPLICAS)):
            ready = pathlib.Path(directory) / f"replica-{i}.json"
            ready_files.append(ready)
            args = [*shlex.split(ours(command)), "--ready-file", str(ready)]
            processes.append(subprocess.Popen(args, env=recipe_env, stderr=subprocess.DEVNULL))
        for ready in ready_files:
            wait_until(ready.exists, f"{ready.name}: the replica serves")

        [sidecar_command] = _lines(SIDECAR)
        sidecar = subprocess.Popen(
            shlex.split(ours(sidecar_command)),
            env=recipe_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        processes.append(sidecar)
        wait_until(lambda: "subscribed" in sidecar.stderr.readline(), "the sidecar subscribes")

        first, second = _lines(WRITES)
        assert bash(first).returncode == 0
        assert sidecar.stdout.readline().startswith("#1 CREATED")
        processes[0].send_signal(signal.SIGINT)  # Ctrl-C in the first replica's terminal
        assert processes[0].wait(30) == 0
        assert bash(second).returncode == 0
        # The sidecar waits on its stream: the test's own timeout bounds this read.
        line = sidecar.stdout.readline()
        assert line.startswith("#2 CREATED") and "second replica" in line
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                process.wait(30)
        stopped = bash(STOP)
        if pathlib.Path(directory).exists():  # the stop failed: leave nothing running
            shutil.rmtree(directory, ignore_errors=True)
    assert stopped.returncode == 0, stopped.stderr
    assert not pathlib.Path(directory).exists()
