import assert from "node:assert/strict";
import { test } from "node:test";

import { DEFAULT_BACKOFF, backoffDelay } from "../src/backoff.js";

test("delays double from 100 ms to 5 s, each shortened by up to a fifth", () => {
  const cases: [number, number, number][] = [
    [0, 0, 100],
    [0, 0.5, 90],
    [1, 0, 200],
    [3, 0, 800],
    [5, 0, 3200],
    [6, 0, 5000],
    [6, 0.5, 4500],
    [10_000, 0, 5000],
    [10_000, 0.999, 4001],
    [-1, 0, 100],
  ];
  for (const [retries, draw, ms] of cases) {
    assert.equal(backoffDelay(retries, draw), ms, `backoffDelay(${retries}, ${draw})`);
  }
});

test("the first delay and the cap can be changed", () => {
  const backoff = { ...DEFAULT_BACKOFF, initialMs: 10, maxMs: 30 };
  assert.deepEqual(
    [0, 1, 2, 3].map((retries) => backoffDelay(retries, 0, backoff)),
    [10, 20, 30, 30],
  );
});
