"""Every error reaches the client with its documented code, however long what it quotes.

A message quoting megabytes of a request or a PRD makes a grpc-message trailer
larger than clients accept (8 KiB by default): they report RESOURCE_EXHAUSTED
("metadata size exceeds hard limit") instead, and retry it for ever. The server
quotes at most a prefix of such values (errors.quoted) and cuts every message
to limits.MAX_STATUS_MESSAGE_BYTES of percent-encoded trailer.
"""

from __future__ import annotations

import grpc
import pytest
from rigger.v1 import rigger_pb2 as pb
from streams import fails

from testkit.serverproc import ServerProcess

# Two UTF-8 bytes, six in a percent-encoded trailer.
E_ACUTE = "\u00e9"


@pytest.fixture
def server(shared_server: ServerProcess) -> ServerProcess:
    """The module's server: these tests write nothing that others could see."""
    return shared_server


@pytest.fixture
def stub(shared_stub):
    return shared_stub


async def test_an_unknown_id_of_4096_accented_characters_is_not_found(stub):
    details = await fails(
        stub.GetTask(pb.GetTaskRequest(task_id=E_ACUTE * 4096)),
        grpc.StatusCode.NOT_FOUND,
        "(4096 characters) not found",
    )
    assert len(details) < 200


async def test_a_due_date_of_4096_accented_characters_is_invalid_argument(stub):
    await fails(
        stub.AddTask(pb.AddTaskRequest(title="T", due_date=E_ACUTE * 4096)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "due_date",
        "YYYY-MM-DD",
    )


async def test_a_second_generation_of_a_prd_with_a_40k_character_title_is_already_exists(
    stub, server
):
    (server.root / "long-title.md").write_text(
        f"# {E_ACUTE * 40_000}\n\n## Objectives\n\n- Ship it\n"
    )
    await stub.GenerateTasksFromPRD(pb.GenerateTasksFromPRDRequest(prd_id="long-title.md"))
    await fails(
        stub.GenerateTasksFromPRD(pb.GenerateTasksFromPRDRequest(prd_id="long-title.md")),
        grpc.StatusCode.ALREADY_EXISTS,
        "(40000 characters)",
        "set replace_existing",
    )


async def test_a_bad_due_date_on_a_40k_character_task_is_invalid_argument(stub, server):
    (server.root / "long-task.md").write_text(
        f"# Dates\n\n## Tasks\n\n- {E_ACUTE * 40_000} Due: 2030-02-30\n"
    )
    await fails(
        stub.GenerateTasksFromPRD(pb.GenerateTasksFromPRDRequest(prd_id="long-task.md")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "'2030-02-30', which is not a date",
    )


async def test_a_200_task_dependency_cycle_is_invalid_argument_naming_its_start(stub, server):
    tasks = "".join(f"- Task {i} {E_ACUTE * 150} (after #{i % 200 + 1})\n" for i in range(1, 201))
    (server.root / "cycle.md").write_text(f"# Cycle\n\n## Tasks\n\n{tasks}")
    await fails(
        stub.GenerateTasksFromPRD(pb.GenerateTasksFromPRDRequest(prd_id="cycle.md")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "form a cycle: task #1",
        "more tasks",
    )
