import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { afterEach, test } from "node:test";

import { Code, ConnectError } from "@connectrpc/connect";

import { connect } from "../src/client.js";
import { isRetryable, watchEvents, type RetryInfo, type WatchOptions } from "../src/watch.js";
import { scripted, startServer, type Stream, type Subscription, type TestServer } from "./server.js";

const FAST: WatchOptions = { initialBackoffMs: 1, maxBackoffMs: 2 };

let server: TestServer | undefined;

afterEach(async () => {
  await server?.close();
  server = undefined;
});

/** Watches a server playing `script` until `count` events arrived or the watch ended. */
async function watch(
  stream: Stream,
  script: Subscription[],
  count: number,
  request: Parameters<typeof watchEvents>[1] = {},
  options: WatchOptions = {},
): Promise<{ sequences: bigint[]; afterSequences: (bigint | undefined)[]; retries: RetryInfo[]; error?: unknown }> {
  const { impl, afterSequences } = scripted(script, stream);
  server = await startServer(impl);
  const sequences: bigint[] = [];
  const retries: RetryInfo[] = [];
  const client = connect({ address: server.address });
  try {
    for await (const event of watchEvents(client, request, {
      ...FAST,
      onRetry: (info) => retries.push(info),
      batched: stream === "batched",
      ...options,
    })) {
      sequences.push(event.sequence);
      if (sequences.length === count) {
        break;
      }
    }
  } catch (error) {
    return { sequences, afterSequences, retries, error };
  }
  return { sequences, afterSequences, retries };
}

const unavailable = (): ConnectError => new ConnectError("server is shutting down", Code.Unavailable);

// Each stream, batched and plain, resumes and retries by the same rules.
for (const stream of ["batched", "plain"] as const) {
  test(`${stream}: resubscribes after the last event it yielded and drops repeats`, async () => {
    const { sequences, afterSequences } = await watch(stream,
      [
        { events: [1n, 2n], end: unavailable() },
        { events: [2n, 1n, 3n], end: "ok" },
        { events: [4n], end: new ConnectError("lagged", Code.ResourceExhausted) },
        { end: new ConnectError("bad filter", Code.InvalidArgument) },
      ],
      10,
    );
    assert.deepEqual(sequences, [1n, 2n, 3n, 4n]);
    assert.deepEqual(afterSequences, [undefined, 2n, 3n, 4n]);
  });

  test(`${stream}: keeps the caller's after_sequence until the first event`, async () => {
    const { sequences, afterSequences } = await watch(stream,
      [{ end: unavailable() }, { events: [5n, 6n], end: new ConnectError("no", Code.PermissionDenied) }],
      10,
      { afterSequence: 5n },
    );
    assert.deepEqual(sequences, [6n]);
    assert.deepEqual(afterSequences, [5n, 5n]);
  });

  test(`${stream}: a live-only watch cut off before any event resumes after the announced head`, async () => {
    const { sequences, afterSequences } = await watch(stream,
      [
        { head: "7", end: unavailable() },
        { head: "9", events: [7n, 8n, 9n], end: new ConnectError("stop", Code.InvalidArgument) },
      ],
      10,
    );
    assert.deepEqual(sequences, [8n, 9n]);
    assert.deepEqual(afterSequences, [undefined, 7n]);
  });

  test(`${stream}: a code the table does not retry is thrown to the caller`, async () => {
    const { error, afterSequences } = await watch(stream,
      [{ end: new ConnectError("no token", Code.Unauthenticated) }],
      1,
    );
    assert.ok(error instanceof ConnectError);
    assert.equal(error.code, Code.Unauthenticated);
    assert.equal(afterSequences.length, 1);
  });

  test(`${stream}: a stream the server ends cleanly is resubscribed (the table's OK row)`, async () => {
    assert.equal(documentedRetries().get("OK"), true);
    const { sequences, retries } = await watch(stream, [{ events: [1n], end: "ok" }, { events: [2n], end: "hang" }], 2);
    assert.deepEqual(sequences, [1n, 2n]);
    assert.equal(retries.length, 1);
    assert.equal(retries[0]?.error, undefined);
  });

  test(`${stream}: retry delays follow the shared backoff and reset when an event arrives`, async () => {
    const { retries } = await watch(stream,
      [
        { end: unavailable() },
        { end: unavailable() },
        { events: [1n], end: unavailable() },
        { events: [2n], end: "hang" },
      ],
      2,
      {},
      { initialBackoffMs: 10, maxBackoffMs: 15 },
    );
    const delays = retries.map((r) => r.delayMs);
    assert.equal(delays.length, 3);
    // 10 ms, then 20 ms capped at 15, then back to 10 after the event; jitter shortens by up to 20 %.
    assert.ok(delays[0]! > 7 && delays[0]! <= 10, `first delay ${delays[0]}`);
    assert.ok(delays[1]! > 11 && delays[1]! <= 15, `second delay ${delays[1]}`);
    assert.ok(delays[2]! > 7 && delays[2]! <= 10, `delay after an event ${delays[2]}`);
  });

  test(`${stream}: aborting the signal ends the watch without an error`, async () => {
    const { impl } = scripted([{ events: [1n], end: "hang" }], stream);
    server = await startServer(impl);
    const stop = new AbortController();
    const sequences: bigint[] = [];
    for await (const event of watchEvents(connect({ address: server.address }), {}, { ...FAST, batched: stream === "batched", signal: stop.signal })) {
      sequences.push(event.sequence);
      stop.abort();
    }
    assert.deepEqual(sequences, [1n]);
  });
}

// The table of retried codes in clients/README.md ("Reconnecting"), which
// every Rigger client follows.
function documentedRetries(): Map<string, boolean> {
  const text = readFileSync(new URL("../../../README.md", import.meta.url), "utf8");
  const table = new Map<string, boolean>();
  for (const match of text.matchAll(/^\| `([A-Z_]+)` \| (yes|no) \|/gm)) {
    table.set(match[1]!, match[2] === "yes");
  }
  return table;
}

// connect-es names codes in camel case and spells CANCELLED as Canceled.
function codeNamed(name: string): Code | undefined {
  if (name === "CANCELLED") {
    return Code.Canceled;
  }
  const camel = name.toLowerCase().replace(/(^|_)([a-z])/g, (_, _sep: string, c: string) => c.toUpperCase());
  return (Code as unknown as Record<string, Code | undefined>)[camel];
}

test("isRetryable follows the documented table for every status code", () => {
  const table = documentedRetries();
  assert.equal(table.size, 17, `the table has ${table.size} codes: ${[...table.keys()].join(", ")}`);
  for (const [name, retried] of table) {
    if (name === "OK") {
      continue; // not an error code in connect-es; the clean-end test above covers it
    }
    const code = codeNamed(name);
    assert.notEqual(code, undefined, `unknown status code ${name}`);
    assert.equal(isRetryable(code!), retried, name);
  }
});

test("a server without the batched stream is read through the plain one", async () => {
  const { impl, afterSequences } = scripted([{ events: [1n, 2n, 3n], end: unavailable() }, { events: [4n, 5n], end: "hang" }]);
  server = await startServer(impl);
  const fallbacks: ConnectError[] = [];
  const sequences: bigint[] = [];
  for await (const event of watchEvents(connect({ address: server.address }), { afterSequence: 0n }, {
    ...FAST,
    onFallback: (error) => fallbacks.push(error),
  })) {
    sequences.push(event.sequence);
    if (sequences.length === 5) {
      break;
    }
  }
  assert.deepEqual(sequences, [1n, 2n, 3n, 4n, 5n]);
  // One batched attempt, then the plain stream for the rest of the watch,
  // resumed after the last event as always.
  assert.deepEqual(server.methods, ["SubscribeToTaskEventBatches", "SubscribeToTaskEvents", "SubscribeToTaskEvents"]);
  assert.deepEqual(afterSequences, [0n, 3n]);
  assert.deepEqual(fallbacks.map((e) => e.code), [Code.Unimplemented]);
});

test("a watch with batched: false never asks for batches", async () => {
  const { impl } = scripted([{ events: [1n], end: "hang" }]);
  server = await startServer(impl);
  for await (const event of watchEvents(connect({ address: server.address }), {}, { ...FAST, batched: false })) {
    assert.equal(event.sequence, 1n);
    break;
  }
  assert.deepEqual(server.methods, ["SubscribeToTaskEvents"]);
});

test("UNIMPLEMENTED from the plain stream too is thrown", async () => {
  server = await startServer({});
  await assert.rejects(
    async () => {
      for await (const _ of watchEvents(connect({ address: server!.address }), {}, FAST)) {
        assert.fail("no event expected");
      }
    },
    (e: unknown) => e instanceof ConnectError && e.code === Code.Unimplemented,
  );
  assert.deepEqual(server.methods, ["SubscribeToTaskEventBatches", "SubscribeToTaskEvents"]);
});
