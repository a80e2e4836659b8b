"""A user's program: add a task, then watch for its CREATED event."""

import asyncio
import sys

from rigger.v1 import rigger_pb2 as pb
from rigger_client import connect, stub, watch_events


async def main(address: str) -> None:
    async with connect(address) as channel:
        rigger = stub(channel)
        added = await rigger.AddTask(pb.AddTaskRequest(title="from the python consumer"))
        replay = pb.SubscribeToTaskEventsRequest(after_sequence=0)
        async for event in watch_events(rigger, replay):
            if event.task.id == added.task.id:
                print(pb.TaskEventType.Name(event.event_type), event.task.title)
                return


asyncio.run(main(sys.argv[1]))
