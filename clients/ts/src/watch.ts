import { create, type MessageInitShape } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createContextKey,
  createContextValues,
  type CallOptions,
  type Client,
  type Interceptor,
} from "@connectrpc/connect";
import { setTimeout as sleep } from "node:timers/promises";

import {
  RiggerService,
  SubscribeToTaskEventsRequestSchema,
  type TaskEvent,
} from "../gen/rigger/v1/rigger_pb.js";

/** What watchEvents subscribes with: the generated message or its init shape. */
export type WatchRequest = MessageInitShape<typeof SubscribeToTaskEventsRequestSchema>;

/** Passed to WatchOptions.onSubscribed each time a subscription is made. */
export interface SubscribedInfo {
  /** The after_sequence sent; undefined means live events only. */
  readonly afterSequence: bigint | undefined;
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
  /** Called when a subscription request has reached the server's connection. */
  onSubscribed?: ((info: SubscribedInfo) => void) | undefined;
  /** Called when a stream ended and a resubscription is scheduled. */
  onRetry?: ((info: RetryInfo) => void) | undefined;
  /** First reconnect delay, before jitter. Default 100 ms. */
  initialBackoffMs?: number | undefined;
  /** Largest reconnect delay, before jitter. Default 5000 ms. */
  maxBackoffMs?: number | undefined;
  /** Extra request headers for every subscription. */
  headers?: CallOptions["headers"] | undefined;
}

// Codes that describe a broken or ended stream rather than a bad request.
// RESOURCE_EXHAUSTED is how the server ends a lagging subscriber; INTERNAL and
// UNKNOWN are what connect-es reports for transport resets (RST_STREAM,
// GOAWAY mid-stream). CANCELED only reaches here when our own signal did not
// cause it, e.g. a proxy cancelling the stream.
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
 * True for codes watchEvents reconnects on. Everything else (InvalidArgument,
 * Unauthenticated, PermissionDenied, Unimplemented, OutOfRange, NotFound, ...)
 * would fail the same way again, so it is thrown to the caller.
 */
export function isRetryable(code: Code): boolean {
  return RETRYABLE.has(code);
}

/**
 * Context key for a callback that the requestSentInterceptor runs once a
 * streaming call's request body has been written to the HTTP/2 stream.
 */
export const onRequestSentKey = createContextKey<(() => void) | undefined>(undefined, {
  description: "rigger: called once the request body is written",
});

/**
 * Runs the onRequestSentKey callback once a streaming request has been
 * written out. connect() installs it.
 *
 * The Rigger server sends no response headers until the first event, so
 * without this a live-only subscriber could not tell when it is subscribed:
 * connect-es only resolves a stream call once headers arrive. Written-out is
 * the closest observable point, and the server registers the subscriber as
 * soon as it reads the request.
 */
export const requestSentInterceptor: Interceptor = (next) => async (req) => {
  const onSent = req.contextValues.get(onRequestSentKey);
  if (!req.stream || onSent === undefined) {
    return next(req);
  }
  return next({ ...req, message: thenCall(req.message, onSent) });
};

async function* thenCall<T>(messages: AsyncIterable<T>, done: () => void): AsyncGenerator<T> {
  // The HTTP/2 client pulls the next chunk only from the write callback of the
  // previous one, so resuming after the last message means it has been sent.
  yield* messages;
  done();
}

/**
 * Subscribes to task events and yields each one exactly once, reconnecting
 * with exponential backoff and jitter whenever the stream breaks.
 *
 * Every resubscription sends after_sequence = the last sequence yielded (or
 * the caller's own after_sequence while nothing has been yielded yet), so the
 * server replays what was missed; any event at or below that sequence is
 * dropped in case a server repeats one. Non-retryable errors (see
 * isRetryable) are thrown as ConnectError. Aborting `options.signal` ends the
 * iteration without an error.
 */
export async function* watchEvents(
  client: Client<typeof RiggerService>,
  request: WatchRequest,
  options: WatchOptions = {},
): AsyncGenerator<TaskEvent, void, undefined> {
  const { signal } = options;
  const initialDelay = options.initialBackoffMs ?? 100;
  const maxDelay = options.maxBackoffMs ?? 5000;
  const original = create(SubscribeToTaskEventsRequestSchema, request);
  const originalAfter = original.afterSequence;

  let last: bigint | undefined;
  let delay = initialDelay;
  for (let attempt = 0; !signal?.aborted; attempt++) {
    const afterSequence = last ?? originalAfter;
    const subscription = create(SubscribeToTaskEventsRequestSchema, {
      eventTypes: original.eventTypes,
      ...(original.assigneeFilter !== undefined && { assigneeFilter: original.assigneeFilter }),
      ...(afterSequence !== undefined && { afterSequence }),
    });

    // A call of our own, so that a consumer breaking out of the loop (or an
    // error thrown below) always closes the HTTP/2 stream.
    const call = new AbortController();
    const callSignal = signal ? AbortSignal.any([signal, call.signal]) : call.signal;

    // announce may run inside connect-es (interceptor, onHeader), where a
    // throwing hook would surface as a retryable UNKNOWN and be retried
    // forever; remember the failure and rethrow it as it was.
    let announced = false;
    let hookFailure: { error: unknown } | undefined;
    const announce = (): void => {
      if (announced) {
        return;
      }
      announced = true;
      try {
        options.onSubscribed?.({ afterSequence, attempt });
      } catch (e) {
        hookFailure = { error: e };
        call.abort(e);
      }
    };

    let error: ConnectError | undefined;
    try {
      const stream = client.subscribeToTaskEvents(subscription, {
        signal: callSignal,
        onHeader: announce,
        contextValues: createContextValues().set(onRequestSentKey, announce),
        ...(options.headers !== undefined && { headers: options.headers }),
      });
      for await (const event of stream) {
        announce();
        if (hookFailure !== undefined) {
          break;
        }
        const floor = last ?? originalAfter;
        if (floor !== undefined && event.sequence <= floor) {
          continue;
        }
        last = event.sequence;
        delay = initialDelay;
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
      if (!isRetryable(error.code)) {
        throw error;
      }
    } finally {
      call.abort();
    }
    if (hookFailure !== undefined) {
      throw hookFailure.error;
    }

    const delayMs = jitter(delay);
    delay = Math.min(delay * 2, maxDelay);
    options.onRetry?.({
      error,
      code: error?.code,
      delayMs,
      afterSequence: last ?? originalAfter,
      attempt: attempt + 1,
    });
    try {
      await sleep(delayMs, undefined, signal ? { signal } : {});
    } catch {
      return; // aborted while waiting
    }
  }
}

// Between half and all of the delay: keeps a fleet of sidecars that lost the
// same server from reconnecting in lockstep, without ever retrying instantly.
function jitter(delay: number): number {
  return Math.round(delay / 2 + Math.random() * (delay / 2));
}
