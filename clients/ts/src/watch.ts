import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type CallOptions, type Client } from "@connectrpc/connect";
import { setTimeout as sleep } from "node:timers/promises";

// Only what the first release's generated code has too: the version-skew
// check (conformance/skew.py) runs this module over that code.
import {
  RiggerService,
  SubscribeToTaskEventsRequestSchema,
  type SubscribeToTaskEventsRequest,
  type TaskEvent,
} from "../gen/rigger/v1/rigger_pb.js";
import { DEFAULT_BACKOFF, backoffDelay, type Backoff } from "./backoff.js";

/** What watchEvents subscribes with: the generated message or its init shape. */
export type WatchRequest = MessageInitShape<typeof SubscribeToTaskEventsRequestSchema>;

/**
 * The response header in which the server names the newest event committed
 * when it registered a subscription.
 */
export const HEAD_SEQUENCE_HEADER = "rigger-head-sequence";

/** Passed to WatchOptions.onSubscribed each time the server registers a subscription. */
export interface SubscribedInfo {
  /** The after_sequence sent; undefined means live events only. */
  readonly afterSequence: bigint | undefined;
  /**
   * The server's rigger-head-sequence: the newest event committed when the
   * subscription was registered. Undefined when the server sent none.
   */
  readonly headSequence: bigint | undefined;
  /** 0 for the first subscription, then +1 per reconnect. */
  readonly attempt: number;
}

/** Passed to WatchOptions.onRetry before each reconnect delay. */
export interface RetryInfo {
  /** Why the stream ended; undefined when the server ended it without an error. */
  readonly error: ConnectError | undefined;
  /** The code of `error`, or undefined for a normal end. */
  readonly code: Code | undefined;
  /** How long watchEvents waits before resubscribing. */
  readonly delayMs: number;
  /** The after_sequence the next subscription will send. */
  readonly afterSequence: bigint | undefined;
  /** The attempt number of the next subscription. */
  readonly attempt: number;
}

/** Options for watchEvents. */
export interface WatchOptions {
  /** Aborting ends the iteration (normally, without an error) promptly. */
  signal?: AbortSignal | undefined;
  /**
   * Called when the server has registered a subscription (its response
   * headers arrived): from then on no committed event is missed.
   */
  onSubscribed?: ((info: SubscribedInfo) => void) | undefined;
  /** Called when a stream ended and a resubscription is scheduled. */
  onRetry?: ((info: RetryInfo) => void) | undefined;
  /**
   * First reconnect delay, before jitter. Default 100 ms; it doubles with
   * each attempt that received no event, and each delay is shortened at
   * random by up to 20 %.
   */
  initialBackoffMs?: number | undefined;
  /** Largest reconnect delay (jitter only shortens it). Default 5000 ms. */
  maxBackoffMs?: number | undefined;
  /** Extra request headers for every subscription. */
  headers?: CallOptions["headers"] | undefined;
  /**
   * Read SubscribeToTaskEventBatches, which carries every event queued for
   * the subscriber in one message (default true). A server that answers it
   * UNIMPLEMENTED (one from before the batched stream) is read through
   * SubscribeToTaskEvents for the rest of the watch. false reads
   * SubscribeToTaskEvents only.
   */
  batched?: boolean | undefined;
  /**
   * Called with the server's UNIMPLEMENTED answer when the watch switches to
   * SubscribeToTaskEvents; it resubscribes at once, resuming as after any
   * other ending.
   */
  onFallback?: ((error: ConnectError) => void) | undefined;
}

// Codes that describe a broken or ended stream rather than a bad request: the
// table in clients/README.md ("Reconnecting"), the same in every Rigger client
// (a stream the server ends cleanly is retried too). RESOURCE_EXHAUSTED is how
// the server ends a lagging subscriber; INTERNAL and UNKNOWN are what
// connect-es reports for transport resets (RST_STREAM, GOAWAY mid-stream).
// CANCELED only reaches here when our own signal did not cause it, e.g. a
// proxy cancelling the stream.
const RETRYABLE: ReadonlySet<Code> = new Set([
  Code.Unavailable,
  Code.ResourceExhausted,
  Code.Internal,
  Code.Unknown,
  Code.Canceled,
  Code.DeadlineExceeded,
  Code.Aborted,
]);

/**
 * True for codes watchEvents reconnects on (clients/README.md, "Reconnecting").
 * Everything else (InvalidArgument, Unauthenticated, PermissionDenied,
 * Unimplemented, OutOfRange, NotFound, ...) would fail the same way again, so
 * it is thrown to the caller.
 */
export function isRetryable(code: Code): boolean {
  return RETRYABLE.has(code);
}

/**
 * Subscribes to task events and yields each one exactly once, reconnecting
 * with exponential backoff and jitter whenever the stream breaks. It reads
 * the batched stream unless `options.batched` is false or the server lacks
 * it (see WatchOptions.batched), and yields its events one by one.
 *
 * Every resubscription sends after_sequence = the last sequence yielded (or
 * the caller's own after_sequence while nothing has been yielded yet), so the
 * server replays what was missed; any event at or below that sequence is
 * dropped in case a server repeats one. A live-only watch (no after_sequence)
 * that breaks before its first event resumes after the rigger-head-sequence
 * of its first registered subscription, so events committed while it was
 * reconnecting are not lost either. Non-retryable errors (see
 * isRetryable) are thrown as ConnectError. Aborting `options.signal` ends the
 * iteration without an error.
 */
export async function* watchEvents(
  client: Client<typeof RiggerService>,
  request: WatchRequest,
  options: WatchOptions = {},
): AsyncGenerator<TaskEvent, void, undefined> {
  const { signal } = options;
  const backoff: Backoff = {
    ...DEFAULT_BACKOFF,
    ...(options.initialBackoffMs !== undefined && { initialMs: options.initialBackoffMs }),
    ...(options.maxBackoffMs !== undefined && { maxMs: options.maxBackoffMs }),
  };
  const original = create(SubscribeToTaskEventsRequestSchema, request);
  const originalAfter = original.afterSequence;

  let last: bigint | undefined;
  // Where a live-only watch resumes while it has yielded nothing: the head
  // sequence of its first registered subscription. Later heads must not move
  // it, because those subscriptions replay from here and their events may
  // still be in flight.
  let head: bigint | undefined;
  // Attempts since the last event: the delay grows with them.
  let retries = 0;
  // Generated code from before the batched stream has no method for it.
  let batched = (options.batched ?? true) && typeof client.subscribeToTaskEventBatches === "function";
  for (let attempt = 0; !signal?.aborted; attempt++) {
    const afterSequence = last ?? originalAfter ?? head;
    const subscription = create(SubscribeToTaskEventsRequestSchema, {
      eventTypes: original.eventTypes,
      ...(original.assigneeFilter !== undefined && { assigneeFilter: original.assigneeFilter }),
      ...(afterSequence !== undefined && { afterSequence }),
    });

    // A call of our own, so that a consumer breaking out of the loop (or an
    // error thrown below) always closes the HTTP/2 stream.
    const call = new AbortController();
    const callSignal = signal ? AbortSignal.any([signal, call.signal]) : call.signal;

    // announce runs inside connect-es (onHeader), where a throwing hook would
    // surface as a retryable UNKNOWN and be retried forever; remember the
    // failure and rethrow it as it was.
    let hookFailure: { error: unknown } | undefined;
    const announce = (headers: Headers): void => {
      const headSequence = parseSequence(headers.get(HEAD_SEQUENCE_HEADER));
      if (afterSequence === undefined && head === undefined) {
        head = headSequence;
      }
      try {
        options.onSubscribed?.({ afterSequence, headSequence, attempt });
      } catch (e) {
        hookFailure = { error: e };
        call.abort(e);
      }
    };

    let error: ConnectError | undefined;
    try {
      const stream = events(client, subscription, batched, {
        signal: callSignal,
        onHeader: announce,
        ...(options.headers !== undefined && { headers: options.headers }),
      });
      for await (const event of stream) {
        if (hookFailure !== undefined) {
          break;
        }
        // Never the head itself: a live subscription may still deliver events
        // at or below it, committed while the server was reading it.
        const floor = last ?? afterSequence;
        if (floor !== undefined && event.sequence <= floor) {
          continue;
        }
        last = event.sequence;
        retries = 0;
        yield event;
      }
    } catch (e) {
      if (hookFailure !== undefined) {
        throw hookFailure.error;
      }
      if (signal?.aborted) {
        return;
      }
      error = ConnectError.from(e);
      if (batched && error.code === Code.Unimplemented) {
        // Not a failure: this server predates the batched stream.
        batched = false;
        options.onFallback?.(error);
        continue;
      }
      if (!isRetryable(error.code)) {
        throw error;
      }
    } finally {
      call.abort();
    }
    if (hookFailure !== undefined) {
      throw hookFailure.error;
    }

    const delayMs = backoffDelay(retries, Math.random(), backoff);
    retries++;
    options.onRetry?.({
      error,
      code: error?.code,
      delayMs,
      afterSequence: last ?? originalAfter ?? head,
      attempt: attempt + 1,
    });
    try {
      await sleep(delayMs, undefined, signal ? { signal } : {});
    } catch {
      return; // aborted while waiting
    }
  }
}

// One subscription's events, from either stream.
async function* events(
  client: Client<typeof RiggerService>,
  subscription: SubscribeToTaskEventsRequest,
  batched: boolean,
  options: CallOptions,
): AsyncGenerator<TaskEvent, void, undefined> {
  if (!batched) {
    yield* client.subscribeToTaskEvents(subscription, options);
    return;
  }
  // The batched request has the same fields, meaning the same.
  const request = {
    eventTypes: subscription.eventTypes,
    ...(subscription.assigneeFilter !== undefined && { assigneeFilter: subscription.assigneeFilter }),
    ...(subscription.afterSequence !== undefined && { afterSequence: subscription.afterSequence }),
  };
  for await (const batch of client.subscribeToTaskEventBatches(request, options)) {
    yield* batch.events;
  }
}

const UINT64_MAX = 2n ** 64n - 1n;

// A header value as a uint64, or undefined when it is absent or not one.
function parseSequence(value: string | null): bigint | undefined {
  if (value === null || !/^\d{1,20}$/.test(value.trim())) {
    return undefined;
  }
  const n = BigInt(value.trim());
  return n <= UINT64_MAX ? n : undefined;
}
