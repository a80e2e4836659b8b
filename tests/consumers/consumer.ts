// A user's program: add a task, then watch for its CREATED event.
import { connect, eventTypeName, watchEvents } from "@rigger-dev/client";

const client = connect({ address: process.argv[2] ?? "localhost:50051" });
const { task } = await client.addTask({ title: "from the ts consumer" });
for await (const event of watchEvents(client, { afterSequence: 0n })) {
  if (event.task?.id === task?.id) {
    console.log(`TASK_EVENT_TYPE_${eventTypeName(event.eventType)} ${event.task?.title}`);
    break;
  }
}
