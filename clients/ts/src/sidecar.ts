#!/usr/bin/env node
// rigger sidecar: prints every task event as one line on stdout, resuming
// across disconnects and server restarts without gaps or duplicates. It reads
// the batched stream, or the plain one from a server without it
// (watchEvents). With --state-file it records each printed event's sequence
// and resumes after it when restarted (statefile.ts).
//
// The flags and the stdout format are shared with the Python and Go sidecars;
// change them only together.
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

import { Code, ConnectError } from "@connectrpc/connect";

import type { TaskEventType } from "../gen/rigger/v1/rigger_pb.js";
import { connect } from "./client.js";
import { formatEvent, parseEventType } from "./names.js";
import { StateFile, StateFileError } from "./statefile.js";
import { watchEvents, type RetryInfo, type SubscribedInfo } from "./watch.js";

const USAGE = `usage: rigger-sidecar [options]

Print every Rigger task event as one line on stdout:
  #<sequence> <TYPE> task=<id> title=<quoted> status=<STATUS> assignee=<quoted or ->
Status and reconnect notices go to stderr. Reconnects resume after the last
event printed, so nothing is lost or repeated. Ctrl-C stops. Exit status: 0
when stopped, 1 on an error retrying cannot fix, 2 on bad usage or a state
file that cannot be used.

options:
  --addr HOST:PORT        server address (default: localhost:50051)
  --event-type TYPE       only this event type; repeatable. CREATED,
                          TASK_EVENT_TYPE_CREATED or a number; any case
  --assignee NAME         only events whose task has exactly this assignee
  --after-sequence N      first replay every stored event after N (0: all)
  --state-file PATH       record the sequence of each printed event in PATH
                          (replaced atomically) and, when PATH exists at
                          start, resume after it instead of --after-sequence;
                          after a kill at most the last line printed is
                          printed again (default: no state file)
  --ca-file PATH          PEM CA bundle; enables TLS
  --cert-file PATH        PEM client certificate for mutual TLS (with --key-file)
  --key-file PATH         PEM private key for --cert-file
  --token-file PATH       bearer token: the file's first line
                          (default: the RIGGER_TOKEN environment variable)
  -h, --help              show this help and exit
`;

const UINT64_MAX = 2n ** 64n - 1n;

class UsageError extends Error {}

interface Settings {
  address: string;
  eventTypes: TaskEventType[];
  assignee: string | undefined;
  afterSequence: bigint | undefined;
  caFile: string | undefined;
  certFile: string | undefined;
  keyFile: string | undefined;
  token: string | undefined;
  stateFile: string | undefined;
}

function parseSettings(argv: string[]): Settings | "help" {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        addr: { type: "string", default: "localhost:50051" },
        "event-type": { type: "string", multiple: true, default: [] },
        assignee: { type: "string" },
        "after-sequence": { type: "string" },
        "ca-file": { type: "string" },
        "cert-file": { type: "string" },
        "key-file": { type: "string" },
        "token-file": { type: "string" },
        "state-file": { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
  const v = parsed.values;
  if (v.help) {
    return "help";
  }
  if (v.addr.trim() === "") {
    throw new UsageError("--addr must not be empty");
  }
  if ((v["cert-file"] === undefined) !== (v["key-file"] === undefined)) {
    throw new UsageError("--cert-file and --key-file must be given together");
  }
  return {
    address: v.addr,
    eventTypes: v["event-type"].map(eventTypeFlag),
    assignee: v.assignee,
    afterSequence: v["after-sequence"] === undefined ? undefined : parseSequence(v["after-sequence"]),
    caFile: v["ca-file"],
    certFile: v["cert-file"],
    keyFile: v["key-file"],
    token: readToken(v["token-file"]),
    stateFile: v["state-file"],
  };
}

function eventTypeFlag(text: string): TaskEventType {
  try {
    return parseEventType(text);
  } catch (e) {
    throw new UsageError(`--event-type: ${e instanceof Error ? e.message : String(e)}`);
  }
}

function parseSequence(text: string): bigint {
  if (!/^\d+$/.test(text.trim())) {
    throw new UsageError(`--after-sequence ${text}: not a non-negative integer`);
  }
  const n = BigInt(text.trim());
  if (n > UINT64_MAX) {
    throw new UsageError(`--after-sequence ${text}: larger than a uint64`);
  }
  return n;
}

function readToken(file: string | undefined): string | undefined {
  let token: string | undefined;
  if (file !== undefined) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (e) {
      throw new UsageError(`--token-file ${file}: ${e instanceof Error ? e.message : String(e)}`);
    }
    token = (text.split(/\r?\n/, 1)[0] ?? "").trim();
    if (token === "") {
      throw new UsageError(`--token-file ${file}: the first line is empty`);
    }
    return token;
  }
  token = process.env["RIGGER_TOKEN"]?.trim();
  return token === "" ? undefined : token;
}

/** "ResourceExhausted" -> "RESOURCE_EXHAUSTED", as gRPC spells status codes. */
function codeName(code: Code): string {
  const name = Code[code] as string | undefined;
  return name === undefined ? String(code) : name.replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

// Why stdout stopped taking lines (EPIPE: whoever read it is gone), once it did.
let stdoutError: Error | undefined;

function written(line: string): Promise<void> {
  return new Promise((resolve, reject) => {
    process.stdout.write(line, (error) => {
      if (error) {
        stdoutError ??= error;
        reject(error);
      } else {
        resolve();
      }
    });
  });
}

/**
 * Hands `line` to stdout, and waits while stdout holds more than its
 * highWaterMark: a pipe is written asynchronously, so a reader slower than
 * the events would otherwise have every line it has not read yet kept in
 * memory. The watch is not read meanwhile, and the server's flow control
 * holds the rest. Ends early when stdout fails or `signal` aborts.
 */
async function printed(line: string, signal: AbortSignal): Promise<void> {
  if (process.stdout.write(line)) {
    return;
  }
  try {
    await once(process.stdout, "drain", { signal });
  } catch {
    // Aborted (a signal, or stdout failed: its listener aborts too), or
    // stdout failed while waiting; the caller finds out which.
  }
}

function status(line: string): void {
  process.stderr.write(`${line}\n`);
}

async function main(): Promise<number> {
  let settings: Settings | "help";
  try {
    settings = parseSettings(process.argv.slice(2));
  } catch (e) {
    if (e instanceof UsageError) {
      status(`error: ${e.message} (see --help)`);
      return 2;
    }
    throw e;
  }
  if (settings === "help") {
    process.stdout.write(USAGE);
    return 0;
  }
  let state: StateFile | undefined;
  let afterSequence = settings.afterSequence;
  if (settings.stateFile !== undefined) {
    state = new StateFile(settings.stateFile);
    try {
      afterSequence = state.load() ?? afterSequence;
      state.checkWritable();
    } catch (e) {
      if (e instanceof StateFileError) {
        status(`error: --state-file ${settings.stateFile}: ${e.message}; fix it, or delete it to start afresh`);
        return 2;
      }
      throw e;
    }
  }

  const stop = new AbortController();
  const onSignal = (): void => {
    if (stop.signal.aborted) {
      process.exit(0); // a second Ctrl-C: do not wait any longer
    }
    stop.abort();
    // Closing normally takes milliseconds; never let a stuck socket keep a
    // stopped sidecar alive.
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  // A closed stdout (e.g. piped into `head`) means nobody is listening: an
  // error (status 1), as in the other sidecars.
  process.stdout.on("error", (error) => {
    stdoutError ??= error;
    stop.abort();
  });

  const { address } = settings;
  let client;
  try {
    client = connect({
      address,
      caFile: settings.caFile,
      certFile: settings.certFile,
      keyFile: settings.keyFile,
      token: settings.token,
    });
  } catch (e) {
    status(`error: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }

  const events = watchEvents(
    client,
    {
      eventTypes: settings.eventTypes,
      ...(settings.assignee !== undefined && { assigneeFilter: settings.assignee }),
      ...(afterSequence !== undefined && { afterSequence }),
    },
    {
      signal: stop.signal,
      onSubscribed: ({ afterSequence, headSequence }: SubscribedInfo) => {
        const from = afterSequence === undefined ? "live" : `resuming after #${afterSequence}`;
        status(`subscribed to ${address} (${from})`);
        // A live start records the head it resumes after, so a restart
        // before the first event misses nothing either.
        if (afterSequence === undefined && headSequence !== undefined) {
          state?.save(headSequence);
        }
      },
      onFallback: (error: ConnectError) => {
        status(
          `the server has no SubscribeToTaskEventBatches (UNIMPLEMENTED: ${error.rawMessage}); ` +
            "reading SubscribeToTaskEvents",
        );
      },
      onRetry: ({ error, delayMs }: RetryInfo) => {
        const why =
          error === undefined
            ? "stream ended by the server"
            : `stream failed: ${codeName(error.code)}: ${error.rawMessage}`;
        status(`${why}; reconnecting in ${delayMs} ms`);
      },
    },
  );

  try {
    for await (const event of events) {
      const line = `${formatEvent(event)}\n`;
      if (state === undefined) {
        await printed(line, stop.signal);
        continue;
      }
      // Recorded only once handed to the OS (a pipe is written
      // asynchronously): a kill in between repeats this line after a
      // restart, never loses it.
      await written(line);
      state.save(event.sequence);
    }
  } catch (e) {
    if (stdoutError !== undefined) {
      status(`error: writing stdout: ${stdoutError.message}`);
      return 1;
    }
    if (e instanceof StateFileError) {
      status(`error: --state-file ${settings.stateFile}: ${e.message}`);
      return 1;
    }
    const error = ConnectError.from(e);
    status(`error: ${codeName(error.code)}: ${error.rawMessage}`);
    return 1;
  }
  if (stdoutError !== undefined) {
    status(`error: writing stdout: ${stdoutError.message}`);
    return 1;
  }
  status("stopped");
  return 0;
}

process.exitCode = await main();
