// A real gRPC server on a free loopback port, serving a scripted RiggerService
// in this process (connect-node's server side), for the client's tests.
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";

import { create } from "@bufbuild/protobuf";
import { ConnectError, type ConnectRouter, type ServiceImpl } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";

import { RiggerService, TaskEventSchema } from "../gen/rigger/v1/rigger_pb.js";
import { HEAD_SEQUENCE_HEADER } from "../src/watch.js";

export interface TestServer {
  readonly address: string;
  close(): Promise<void>;
}

export async function startServer(impl: Partial<ServiceImpl<typeof RiggerService>>): Promise<TestServer> {
  const handler = connectNodeAdapter({
    routes: (router: ConnectRouter) => router.service(RiggerService, impl),
  });
  const server = http2.createServer(handler);
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (session) => {
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
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

/**
 * A SubscribeToTaskEvents that plays `script`, one entry per call, and
 * records each call's after_sequence.
 */
export function scripted(script: Subscription[]): {
  impl: Partial<ServiceImpl<typeof RiggerService>>;
  afterSequences: (bigint | undefined)[];
} {
  const afterSequences: (bigint | undefined)[] = [];
  return {
    afterSequences,
    impl: {
      async *subscribeToTaskEvents(request, context) {
        afterSequences.push(request.afterSequence);
        const step = script[afterSequences.length - 1];
        if (step === undefined) {
          throw new Error(`unexpected subscription #${afterSequences.length}`);
        }
        if (step.head !== undefined) {
          context.responseHeader.set(HEAD_SEQUENCE_HEADER, step.head);
        }
        for (const sequence of step.events ?? []) {
          yield create(TaskEventSchema, { sequence });
        }
        if (step.end === "hang") {
          await new Promise((resolve) => context.signal.addEventListener("abort", resolve));
        } else if (step.end !== "ok") {
          throw step.end;
        }
      },
    },
  };
}
