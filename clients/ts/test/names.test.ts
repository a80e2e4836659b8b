import assert from "node:assert/strict";
import { test } from "node:test";

import { create } from "@bufbuild/protobuf";

import { TaskEventSchema, TaskEventType, TaskStatus } from "../gen/rigger/v1/rigger_pb.js";
import { eventTypeName, formatEvent, parseEventType, statusName } from "../src/names.js";

test("parseEventType takes short names, full names and numbers, in any case", () => {
  const cases: [string, number][] = [
    ["CREATED", TaskEventType.CREATED],
    ["status_changed", TaskEventType.STATUS_CHANGED],
    ["TASK_EVENT_TYPE_DELETED", TaskEventType.DELETED],
    ["task_event_type_assigned", TaskEventType.ASSIGNED],
    [" Updated ", TaskEventType.UPDATED],
    ["4", TaskEventType.STATUS_CHANGED],
    ["UNSPECIFIED", TaskEventType.UNSPECIFIED],
  ];
  for (const [text, want] of cases) {
    assert.equal(parseEventType(text), want, text);
  }
});

test("parseEventType passes numbers it does not know, for a newer server", () => {
  assert.equal(parseEventType("42"), 42);
});

test("parseEventType refuses what is no event type, naming the known ones", () => {
  for (const text of ["", "-1", "CREATE", "TASK_EVENT_TYPE_", "TASK_STATUS_TODO", "99999999999"]) {
    assert.throws(() => parseEventType(text), RangeError, text);
  }
  assert.throws(() => parseEventType("nope"), /known: UNSPECIFIED, CREATED, UPDATED/);
});

test("enum names drop their prefix, and unknown numbers print as digits", () => {
  assert.equal(eventTypeName(TaskEventType.STATUS_CHANGED), "STATUS_CHANGED");
  assert.equal(statusName(TaskStatus.IN_PROGRESS), "IN_PROGRESS");
  assert.equal(eventTypeName(99 as TaskEventType), "99");
  assert.equal(statusName(77 as TaskStatus), "77");
});

test("formatEvent prints the sidecars' shared line, escaping the title", () => {
  const event = create(TaskEventSchema, {
    sequence: 3n,
    eventType: TaskEventType.STATUS_CHANGED,
    task: { id: "t-1", title: 'Ünïcode "quoted"\nline', status: TaskStatus.IN_PROGRESS, assignee: "Alice" },
  });
  assert.equal(
    formatEvent(event),
    '#3 STATUS_CHANGED task=t-1 title="Ünïcode \\"quoted\\"\\nline" status=IN_PROGRESS assignee="Alice"',
  );
});

test("formatEvent prints an absent assignee as a dash, an empty one as quotes", () => {
  const base = { sequence: 1n, eventType: TaskEventType.CREATED };
  const absent = create(TaskEventSchema, { ...base, task: { id: "t", title: "T", status: TaskStatus.TODO } });
  const empty = create(TaskEventSchema, { ...base, task: { id: "t", title: "T", assignee: "" } });
  assert.match(formatEvent(absent), / assignee=-$/);
  assert.match(formatEvent(empty), / status=UNSPECIFIED assignee=""$/);
});
