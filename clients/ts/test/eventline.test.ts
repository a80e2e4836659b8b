// formatEvent prints the line every sidecar prints, byte for byte: the cases
// in clients/testdata/event-lines.json, shared by the three clients, and the
// exact bytes for each on the same line of event-lines.txt.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { fromJson, type JsonValue } from "@bufbuild/protobuf";

import { TaskEventSchema } from "../gen/rigger/v1/rigger_pb.js";
import { formatEvent } from "../src/names.js";

// From dist-test/test/ back to clients/testdata/.
const TESTDATA = new URL("../../../testdata/", import.meta.url);

interface Case {
  name: string;
  event: JsonValue;
}

function golden(): { name: string; event: JsonValue; line: Buffer }[] {
  const { cases } = JSON.parse(readFileSync(new URL("event-lines.json", TESTDATA), "utf8")) as { cases: Case[] };
  const text = readFileSync(new URL("event-lines.txt", TESTDATA));
  const lines: Buffer[] = [];
  for (let start = 0; start < text.length; ) {
    const end = text.indexOf(0x0a, start);
    assert.notEqual(end, -1, "event-lines.txt must end with a newline");
    lines.push(text.subarray(start, end + 1));
    start = end + 1;
  }
  assert.equal(lines.length, cases.length, "one line in event-lines.txt per case");
  return cases.map((c, i) => ({ ...c, line: lines[i]! }));
}

for (const { name, event, line } of golden()) {
  test(`golden event line: ${name}`, () => {
    const got = Buffer.from(`${formatEvent(fromJson(TaskEventSchema, event))}\n`, "utf8");
    assert.deepEqual(got, line, `got ${JSON.stringify(got.toString())}\nwant ${JSON.stringify(line.toString())}`);
  });
}
