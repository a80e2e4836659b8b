// A real gRPC server on a free loopback port, serving a scripted RiggerService
// in this process (connect-node's server side), for the client's tests.
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";

import { create } from "@bufbuild/protobuf";
import { ConnectError, type ConnectRouter, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";

import {
  RiggerService,
  SubscribeToTaskEventBatchesResponseSchema,
  TaskEventSchema,
} from "../gen/rigger/v1/rigger_pb.js";
import { HEAD_SEQUENCE_HEADER } from "../src/watch.js";

export interface TestServer {
  readonly address: string;
  /** The method of every call received, in order, whether or not it is served. */
  readonly methods: string[];
  close(): Promise<void>;
}

export async function startServer(impl: Partial<ServiceImpl<typeof RiggerService>>): Promise<TestServer> {
  const handler = connectNodeAdapter({
    routes: (router: ConnectRouter) => router.service(RiggerService, impl),
  });
  const methods: string[] = [];
  const server = http2.createServer((request, response) => {
    methods.push(request.url.slice(request.url.lastIndexOf("/") + 1));
    handler(request, response);
  });
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (session) => {
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    methods,
    close: () =>
      new Promise<void>((resolve) => {
        // Clients keep their HTTP/2 sessions open; end them so close() returns.
        for (const session of sessions) {
          session.destroy();
        }
        server.close(() => resolve());
      }),
  };
}

/** What one SubscribeToTaskEvents call does, in order. */
export interface Subscription {
  /** The rigger-head-sequence response header. */
  head?: string;
  /** Sequences of the events to send. */
  events?: bigint[];
  /** How the call ends: an error, a clean end ("ok"), or never ("hang", until cancelled). */
  end: ConnectError | "ok" | "hang";
}

/** Which subscription a scripted server offers. */
export type Stream = "batched" | "plain";

/**
 * A server that offers one subscription method, SubscribeToTaskEvents
 * ("plain", as servers from before the batched stream) or
 * SubscribeToTaskEventBatches ("batched", each message carrying up to two
 * of a step's events), plays `script` on it, one entry per call, and records
 * each call's after_sequence. connect-node answers the other method
 * UNIMPLEMENTED.
 */
export function scripted(
  script: Subscription[],
  stream: Stream = "plain",
): {
  impl: Partial<ServiceImpl<typeof RiggerService>>;
  afterSequences: (bigint | undefined)[];
} {
  const afterSequences: (bigint | undefined)[] = [];
  async function* play(
    request: { readonly afterSequence?: bigint | undefined },
    context: HandlerContext,
  ): AsyncGenerator<bigint[]> {
    afterSequences.push(request.afterSequence);
    const step = script[afterSequences.length - 1];
    if (step === undefined) {
      throw new Error(`unexpected subscription #${afterSequences.length}`);
    }
    if (step.head !== undefined) {
      context.responseHeader.set(HEAD_SEQUENCE_HEADER, step.head);
    }
    const events = step.events ?? [];
    for (let i = 0; i < events.length; i += stream === "batched" ? 2 : 1) {
      yield events.slice(i, stream === "batched" ? i + 2 : i + 1);
    }
    if (step.end === "hang") {
      await new Promise((resolve) => context.signal.addEventListener("abort", resolve));
    } else if (step.end !== "ok") {
      throw step.end;
    }
  }
  if (stream === "batched") {
    return {
      afterSequences,
      impl: {
        async *subscribeToTaskEventBatches(request, context) {
          for await (const sequences of play(request, context)) {
            const events = sequences.map((sequence) => create(TaskEventSchema, { sequence }));
            yield create(SubscribeToTaskEventBatchesResponseSchema, { events });
          }
        },
      },
    };
  }
  return {
    afterSequences,
    impl: {
      async *subscribeToTaskEvents(request, context) {
        for await (const [sequence] of play(request, context)) {
          yield create(TaskEventSchema, { sequence: sequence! });
        }
      },
    },
  };
}
