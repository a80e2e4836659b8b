// The wait before watchEvents resubscribes: the schedule every Rigger client
// follows (clients/README.md, "Reconnecting").

/** How reconnect delays grow. */
export interface Backoff {
  /** The first delay, before jitter. */
  readonly initialMs: number;
  /** The cap, before jitter (jitter only shortens, so it is a true cap). */
  readonly maxMs: number;
  /** Growth per attempt that received no event. */
  readonly multiplier: number;
  /** The fraction, in [0, 1), by which each delay is shortened at random. */
  readonly jitter: number;
}

/** 100 ms, doubling up to 5 s, each delay shortened by up to 20 %. */
export const DEFAULT_BACKOFF: Backoff = { initialMs: 100, maxMs: 5000, multiplier: 2, jitter: 0.2 };

/**
 * The delay before retry number `retries` (from 0), in whole milliseconds,
 * for a random `draw` in [0, 1).
 */
export function backoffDelay(retries: number, draw: number, backoff: Backoff = DEFAULT_BACKOFF): number {
  // Math.min also caps an exponent that overflows to Infinity.
  const base = Math.min(backoff.maxMs, backoff.initialMs * backoff.multiplier ** Math.max(retries, 0));
  return Math.round(base * (1 - backoff.jitter * draw));
}
