/**
 * Exponential backoff with full jitter: the n-th retry (n from 0) waits a uniformly random time
 * in [0, min(maxMs, baseMs * 2^n)). With the defaults the ceiling goes 0.5 s, 1 s, 2 s, ... and
 * stays at 30 s. `reset()` after a success starts again from the first ceiling.
 */
export interface BackoffOptions {
  /** Ceiling of the first delay, in ms (default 500). */
  baseMs?: number;
  /** Largest ceiling, in ms (default 30 000). */
  maxMs?: number;
  /** Source of randomness in [0, 1); injected so tests are deterministic (default Math.random). */
  random?: () => number;
}

export const BACKOFF_BASE_MS = 500;
export const BACKOFF_MAX_MS = 30_000;

export class Backoff {
  readonly baseMs: number;
  readonly maxMs: number;
  private readonly random: () => number;
  private attempts = 0;

  constructor(options: BackoffOptions = {}) {
    this.baseMs = options.baseMs ?? BACKOFF_BASE_MS;
    this.maxMs = options.maxMs ?? BACKOFF_MAX_MS;
    this.random = options.random ?? Math.random;
    if (!(this.baseMs > 0) || this.maxMs < this.baseMs) {
      throw new RangeError(`invalid backoff bounds: base ${this.baseMs} ms, max ${this.maxMs} ms`);
    }
  }

  /** How many delays were handed out since the last reset. */
  get attempt(): number {
    return this.attempts;
  }

  /** The ceiling of the delay for retry number `attempt` (0-based). */
  ceiling(attempt: number = this.attempts): number {
    // 2^attempt overflows to Infinity for large attempts, which min() turns into maxMs.
    return Math.min(this.maxMs, this.baseMs * 2 ** attempt);
  }

  /** The next delay in ms, and one more attempt counted. */
  next(): number {
    const ceiling = this.ceiling();
    this.attempts += 1;
    const r = Math.min(Math.max(this.random(), 0), 1);
    return Math.min(Math.floor(r * ceiling), ceiling);
  }

  /** After a success: the next delay is drawn from the first ceiling again. */
  reset(): void {
    this.attempts = 0;
  }
}
