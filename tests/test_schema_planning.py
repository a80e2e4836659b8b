"""The planning schema (SQLite version 4): an older database migrates and stays plannable."""

from __future__ import annotations

import contextlib
import pathlib

import grpc
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc
from schemas import v2_database

from testkit.serverproc import ServerProcess

OLD_PRD = "prd-00000000-0000-0000-0000-000000000002"


def _v2_database(path: pathlib.Path) -> None:
    """A database as schema version 2 left it: a PRD without its markdown, and a task."""
    with contextlib.closing(v2_database(path)) as conn, conn:
        conn.execute(
            "INSERT INTO prds (id, path, title, objectives, tech_stack, constraints, parsed_at) "
            "VALUES (?, 'docs/PRD.md', 'Shop', '[\"Take payments\", \"Send receipts\"]', "
            "'[\"Python\"]', '[\"PCI\"]', '2026-01-01T00:00:00.000000Z')",
            (OLD_PRD,),
        )
        conn.execute(
            "INSERT INTO tasks (id, title, status, created_at, updated_at, version) "
            "VALUES ('t1', 'Old task', 1, '2026-01-01T00:00:00.000000Z', "
            "'2026-01-01T00:00:00.000000Z', 1)"
        )


async def test_a_prd_stored_before_its_markdown_was_kept_is_planned_from_its_sections(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    db = root / ".rigger" / "tasks.db"
    db.parent.mkdir()
    _v2_database(db)
    server = ServerProcess(root).start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = rigger_pb2_grpc.RiggerServiceStub(channel)
            reply = await stub.GenerateTasksFromPRD(pb.GenerateTasksFromPRDRequest(prd_id=OLD_PRD))
            orchestrated = await stub.OrchestrateTask(
                pb.OrchestrateTaskRequest(task_id=reply.tasks[0].id)
            )
    finally:
        server.stop()
    assert [t.title for t in reply.tasks] == ["Take payments", "Send receipts"]
    assert "Constraints: PCI." in reply.tasks[0].reasoning
    assert "PCI" in orchestrated.result.enhancement.content
