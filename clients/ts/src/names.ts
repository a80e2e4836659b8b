// Enum names as people type and read them, and the one-line event format that
// every Rigger sidecar prints (the Python and Go clients print the same bytes).
import type { DescEnum } from "@bufbuild/protobuf";

import {
  TaskEventTypeSchema,
  TaskStatusSchema,
  type TaskEvent,
  type TaskEventType,
  type TaskStatus,
} from "../gen/rigger/v1/rigger_pb.js";

const INT32_MAX = 0x7fffffff;

/**
 * An event type from its short name ("CREATED"), its full enum name
 * ("TASK_EVENT_TYPE_CREATED"), either in any case, or its number. Numbers the
 * generated enum does not know are accepted, so a newer server's types can be
 * asked for before the client is regenerated. Throws RangeError otherwise.
 */
export function parseEventType(text: string): TaskEventType {
  const wanted = text.trim().toUpperCase();
  if (/^\d+$/.test(wanted)) {
    const n = Number(wanted);
    if (n > INT32_MAX) {
      throw new RangeError(`event type ${JSON.stringify(text)}: number out of range`);
    }
    return n as TaskEventType;
  }
  const prefix = enumPrefix(TaskEventTypeSchema);
  for (const value of TaskEventTypeSchema.values) {
    const name = value.name.toUpperCase();
    if (name === wanted || name === prefix + wanted) {
      return value.number as TaskEventType;
    }
  }
  const known = TaskEventTypeSchema.values.map((value) => shortName(TaskEventTypeSchema, value.number));
  throw new RangeError(
    `unknown event type ${JSON.stringify(text)} (known: ${known.join(", ")}, or a number)`,
  );
}

/** The event type without its TASK_EVENT_TYPE_ prefix ("CREATED"), or the number if unknown. */
export function eventTypeName(type: TaskEventType): string {
  return shortName(TaskEventTypeSchema, type);
}

/** The status without its TASK_STATUS_ prefix ("IN_PROGRESS"), or the number if unknown. */
export function statusName(status: TaskStatus): string {
  return shortName(TaskStatusSchema, status);
}

/**
 * The event as one line, without the newline:
 * `#<sequence> <TYPE> task=<id> title=<quoted> status=<STATUS> assignee=<quoted or ->`.
 * The rules are in clients/README.md ("The event line"); the Python and Go
 * clients print exactly the same bytes, which clients/testdata/event-lines.txt
 * holds for each client's tests.
 */
export function formatEvent(event: TaskEvent): string {
  const task = event.task;
  const assignee = task?.assignee === undefined ? "-" : quote(task.assignee);
  return (
    `#${event.sequence} ${eventTypeName(event.eventType)}` +
    ` task=${taskId(task?.id ?? "")}` +
    ` title=${quote(task?.title ?? "")}` +
    ` status=${statusName(task?.status ?? 0)}` +
    ` assignee=${assignee}`
  );
}

// A task id is printed bare when it is one plain token, as every id the
// Rigger server makes is: printable ASCII with no space, quote or backslash.
const BARE_ID = /^[!#-[\]-~]+$/;

function taskId(id: string): string {
  if (id === "") {
    return "-";
  }
  return id !== "-" && BARE_ID.test(id) ? id : quote(id);
}

// What quote escapes beyond the quote and the backslash: every control
// character, so a field never ends the line or drives a terminal, and the
// characters that break or reorder a displayed line (the line and paragraph
// separators, the bidirectional controls).
const ESCAPED = /["\\\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const SHORT: Readonly<Record<string, string>> = {
  '"': '\\"',
  "\\": "\\\\",
  "\b": "\\b",
  "\t": "\\t",
  "\n": "\\n",
  "\f": "\\f",
  "\r": "\\r",
};

/** `text` as a JSON string that stays on one line and displays as what it holds. */
export function quote(text: string): string {
  const escaped = text.replace(
    ESCAPED,
    (c) => SHORT[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
  return `"${escaped}"`;
}

// protobuf-es reports the shared prefix in lower case ("task_event_type_").
function enumPrefix(schema: DescEnum): string {
  return (schema.sharedPrefix ?? "").toUpperCase();
}

/** The enum value's proto name without the enum's shared prefix, or the number. */
function shortName(schema: DescEnum, value: number): string {
  const desc = schema.value[value];
  if (desc === undefined) {
    return String(value);
  }
  const prefix = enumPrefix(schema);
  return desc.name.toUpperCase().startsWith(prefix) ? desc.name.slice(prefix.length) : desc.name;
}
