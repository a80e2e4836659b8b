from rigger.v1 import rigger_pb2 as pb


async def test_add_task_returns_the_created_task(stub):
    reply = await stub.AddTask(pb.AddTaskRequest(title="Write the README"))
    assert reply.task.title == "Write the README"
    assert reply.task.version == 1
