import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { lstatSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

import { MAX_STATE_BYTES, StateFile, StateFileError } from "../src/statefile.js";

function scratch(): string {
  return mkdtempSync(join(tmpdir(), "rigger-state-"));
}

function holding(content: string | Buffer): StateFile {
  const path = join(scratch(), "state");
  writeFileSync(path, content);
  return new StateFile(path);
}

test("a missing state file holds no sequence yet", () => {
  assert.equal(new StateFile(join(scratch(), "state")).load(), undefined);
});

test("a saved sequence is loaded back, leaving no temporary file", () => {
  const dir = scratch();
  const state = new StateFile(join(dir, "state"));
  state.checkWritable();
  state.save(41n);
  state.save(42n);
  assert.equal(state.load(), 42n);
  assert.equal(readFileSync(state.path, "utf8"), "42\n");
  assert.deepEqual(readdirSync(dir), ["state"]);
});

test("a sequence may be written by hand", () => {
  const cases: [string, bigint][] = [
    ["0", 0n],
    ["7", 7n],
    [" 7 \r\n", 7n],
    ["18446744073709551615\n", 2n ** 64n - 1n],
  ];
  for (const [content, sequence] of cases) {
    assert.equal(holding(content).load(), sequence, JSON.stringify(content));
  }
});

test("anything but a sequence is refused", () => {
  const cases: [string | Buffer, RegExp][] = [
    ["", /is empty/],
    [" \n", /is empty/],
    ["abc", /not a sequence/],
    ["-1", /not a sequence/],
    ["+1", /not a sequence/],
    ["1.5", /not a sequence/],
    ["0x10", /not a sequence/],
    ["1 2", /not a sequence/],
    ["18446744073709551616", /not a sequence/],
    ["\u0661\u0662", /not a sequence/],
    [Buffer.from([0xff, 0x00, 0x1b, 0x5b, 0x32, 0x4a]), /not a sequence/],
    ["1".repeat(MAX_STATE_BYTES + 1), /more than a sequence/],
    ["7\n" + " ".repeat(MAX_STATE_BYTES), /more than a sequence/],
  ];
  for (const [content, reason] of cases) {
    assert.throws(
      () => holding(content).load(),
      (e: unknown) => e instanceof StateFileError && reason.test(e.message) && !e.message.includes("\x1b"),
      JSON.stringify(content.toString()),
    );
  }
});

test("what is no regular file is refused, a FIFO without waiting for a writer", () => {
  const fifo = join(scratch(), "fifo");
  execFileSync("mkfifo", [fifo]);
  for (const path of [scratch(), "/dev/zero", fifo]) {
    assert.throws(() => new StateFile(path).load(), /is not a regular file/, path);
  }
});

test("a missing directory is found before the first save", () => {
  const state = new StateFile(join(scratch(), "gone", "state"));
  assert.throws(() => state.checkWritable(), /its directory cannot be written: no such file or directory$/);
  assert.throws(() => state.save(3n), /cannot record #3: no such file or directory$/);
});

test("a symlinked state file is read through and replaced, not written through", () => {
  const dir = scratch();
  const target = join(dir, "elsewhere");
  writeFileSync(target, "5\n");
  const state = new StateFile(join(dir, "state"));
  symlinkSync(target, state.path);
  assert.equal(state.load(), 5n);
  state.save(6n);
  assert.equal(readFileSync(target, "utf8"), "5\n");
  assert.equal(lstatSync(state.path).isSymbolicLink(), false);
  assert.equal(state.load(), 6n);
});
