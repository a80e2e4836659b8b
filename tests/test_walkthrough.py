"""Every grpcurl command in the README works as written against a real server."""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
PRD = """# Rigger PRD

## Objectives
- Broadcast every task change

## Tech Stack
1. Python
"""


def _commands() -> list[str]:
    """Each grpcurl command of the README's bash blocks, in order."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        current: list[str] = []
        for line in block.splitlines():
            if line.startswith("grpcurl "):
                if current:
                    commands.append("\n".join(current))
                current = [line]
            elif current and line.strip():
                current.append(line)
            elif current:
                commands.append("\n".join(current))
                current = []
        if current:
            commands.append("\n".join(current))
    return commands


COMMANDS = _commands()


@pytest.fixture(scope="module")
def grpcurl() -> str:
    path = shutil.which("grpcurl") or str(REPO / ".bin" / "grpcurl")
    if not pathlib.Path(path).exists():
        pytest.fail("grpcurl is not installed; `nox -s tests` installs it into .bin/")
    return path


def _run(command: str, grpcurl: str, port: int, task_id: str = "") -> subprocess.CompletedProcess:
    command = command.replace("localhost:50051", f"localhost:{port}").replace("<task-id>", task_id)
    return subprocess.run(
        ["bash", "-c", command],
        env={"PATH": f"{pathlib.Path(grpcurl).parent}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_readme_has_the_guides_commands():
    methods = {m for c in COMMANDS for m in re.findall(r"RiggerService/(\w+)", c)}
    assert methods >= {
        "AddTask",
        "ListTasks",
        "UpdateTask",
        "GetTask",
        "DeleteTask",
        "ParsePRD",
        "SubscribeToTaskEvents",
    }


def test_every_readme_command_works(server, grpcurl):
    (server.root / "docs").mkdir()
    (server.root / "docs" / "PRD.md").write_text(PRD)
    streams = [c for c in COMMANDS if "SubscribeToTaskEvents" in c]
    calls = [c for c in COMMANDS if c not in streams]

    subscribers = []
    for command in streams:
        # -v prints "Response headers received" once the server has
        # registered the subscription, so no event can slip past it.
        command = command.replace("grpcurl -plaintext", "grpcurl -v -plaintext", 1)
        command = command.replace("localhost:50051", f"localhost:{server.port}")
        proc = subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            env={"PATH": f"{pathlib.Path(grpcurl).parent}:/usr/bin:/bin"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        subscribers.append(proc)
    deadline = time.monotonic() + 20
    outputs = ["" for _ in subscribers]
    for i, proc in enumerate(subscribers):
        while "Response headers received" not in outputs[i]:
            assert time.monotonic() < deadline, outputs[i]
            outputs[i] += proc.stdout.readline()

    task_id = ""
    for command in calls:
        result = _run(command, grpcurl, server.port, task_id)
        assert result.returncode == 0, f"{command}\n{result.stdout}{result.stderr}"
        if "AddTask" in command:
            task_id = json.loads(result.stdout)["task"]["id"]
        if "ParsePRD" in command:
            assert json.loads(result.stdout)["prdTitle"] == "Rigger PRD"
        if command.endswith(" list"):
            assert "rigger.v1.RiggerService" in result.stdout
            assert "grpc.health.v1.Health" in result.stdout

    for i, proc in enumerate(subscribers):
        proc.terminate()
        outputs[i] += proc.communicate(timeout=10)[0]
    filtered, replaying = outputs
    # Alice's task: CREATED, then UPDATED for the status change; the
    # reassignment to Charlie is no longer Alice's; DELETED neither.
    assert re.findall(r'"eventType": "(\w+)"', filtered) == [
        "TASK_EVENT_TYPE_CREATED",
        "TASK_EVENT_TYPE_UPDATED",
    ]
    assert re.findall(r'"sequence": "(\d+)"', replaying) == [str(n) for n in range(1, 7)]
