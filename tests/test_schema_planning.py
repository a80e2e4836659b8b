"""The planning schema (SQLite version 4): an older database migrates and stays plannable."""

from __future__ import annotations

import grpc
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc
from schemas import OLD_PRD, v2_database_with_a_prd

from testkit.serverproc import ServerProcess


async def test_a_prd_stored_before_its_markdown_was_kept_is_planned_from_its_sections(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    db = root / ".rigger" / "tasks.db"
    db.parent.mkdir()
    v2_database_with_a_prd(db)
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
