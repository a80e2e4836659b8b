"""Every grpcurl command in the README works as written against a real server."""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess
import time

import docblocks
import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
EXAMPLE_PRD = REPO / "examples" / "PRD.md"


def _commands() -> list[str]:
    """Each grpcurl command of the README's walk-through blocks, in order."""
    commands = []
    for block in docblocks.run_by("README.md", __file__):
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


def _run(
    command: str, grpcurl: str, port: int, placeholders: dict[str, str]
) -> subprocess.CompletedProcess:
    command = command.replace("localhost:50051", f"localhost:{port}")
    for placeholder, value in placeholders.items():
        command = command.replace(placeholder, value)
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
        "GenerateTasksFromPRD",
        "OrchestrateTask",
        "SubscribeToTaskEvents",
    }


def test_every_readme_command_works(server, grpcurl):
    # The server runs in a checkout, where examples/PRD.md ships.
    (server.root / "examples").mkdir()
    shutil.copy(EXAMPLE_PRD, server.root / "examples" / "PRD.md")
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

    placeholders: dict[str, str] = {}
    generations = []
    for command in calls:
        result = _run(command, grpcurl, server.port, placeholders)
        assert result.returncode == 0, f"{command}\n{result.stdout}{result.stderr}"
        if "AddTask" in command:
            placeholders["<task-id>"] = json.loads(result.stdout)["task"]["id"]
        if "ParsePRD" in command:
            parsed = json.loads(result.stdout)
            assert parsed["prdTitle"] == "Sidecar Notifications"
            placeholders["<prd-id>"] = parsed["prdId"]
        if "GenerateTasksFromPRD" in command:
            generated = json.loads(result.stdout)
            generations.append(generated)
            if "tasks" in generated:  # a sync of an unchanged PRD creates none
                placeholders.setdefault("<generated-task-id>", generated["tasks"][0]["id"])
        if "OrchestrateTask" in command:
            orchestrated = json.loads(result.stdout)
            assert orchestrated["result"]["routingDecision"] == "enhance"
            assert orchestrated["task"]["status"] == "TASK_STATUS_ORCHESTRATION_COMPLETE"
        if command.endswith(" list"):
            assert "rigger.v1.RiggerService" in result.stdout
            assert "grpc.health.v1.Health" in result.stdout

    # Events reach streams after the call that caused them has answered, so
    # read each stream up to its last expected event before stopping it.
    # The filtered stream's last event is its third CREATED; the replay's is 15.
    last_events = [('"eventType": "TASK_EVENT_TYPE_CREATED"', 3), ('"sequence": "15"', 1)]
    deadline = time.monotonic() + 20
    for i, proc in enumerate(subscribers):
        marker, count = last_events[i]
        while outputs[i].count(marker) < count:
            assert time.monotonic() < deadline, outputs[i]
            outputs[i] += proc.stdout.readline()
        proc.terminate()
        outputs[i] += proc.communicate(timeout=10)[0]
    filtered, replaying = outputs
    # "model": "llama3.1" on a default server: the offline planner answers, and says so.
    first, again = generations
    assert (first["planner"], first["model"]) == ("offline", "offline")
    assert first["prdId"] == placeholders["<prd-id>"]
    # A sync of the unchanged PRD keeps every task, the orchestrated one too.
    assert "archivedTaskIds" not in again and "tasks" not in again
    assert [r["outcome"] for r in again["results"]] == ["GENERATION_OUTCOME_KEPT"] * 5
    assert again["results"][0]["task"]["id"] == placeholders["<generated-task-id>"]
    # Alice's task: CREATED, then UPDATED for the status change; the
    # reassignment to Charlie is no longer Alice's; DELETED neither. Then the
    # PRD's two tasks for Alice (written "Alice" and "alice") are CREATED.
    assert re.findall(r'"eventType": "(\w+)"', filtered) == [
        "TASK_EVENT_TYPE_CREATED",
        "TASK_EVENT_TYPE_UPDATED",
        "TASK_EVENT_TYPE_CREATED",
        "TASK_EVENT_TYPE_CREATED",
    ]
    # 6 task events, 5 CREATED, 3 STATUS_CHANGED and ORCHESTRATED; the sync writes nothing.
    assert re.findall(r'"sequence": "(\d+)"', replaying) == [str(n) for n in range(1, 16)]
