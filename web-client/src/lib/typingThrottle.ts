/**
 * Sends typing indicators for one conversation: at most one `true` per interval (2 s) while the
 * person keeps typing, and one `false` when they stop. The server drops a typing state 6 s after
 * the last `true`, so a `true` every 2 s keeps it alive without flooding.
 */
export interface TypingThrottleOptions {
  /** Minimum time between two `true` sends, in ms (default 2000). */
  intervalMs?: number;
  /** Clock in ms; injected for tests (default Date.now). */
  now?: () => number;
}

export const TYPING_INTERVAL_MS = 2000;

export interface TypingThrottle {
  /** Call on every keystroke: sends `true` unless one was sent less than the interval ago. */
  input(): void;
  /** Call when the person stops (sent, cleared, blurred, idle): sends `false` once if typing. */
  stop(): void;
  /** Whether a `true` was sent and not yet followed by `false`. */
  readonly active: boolean;
}

export function createTypingThrottle(
  send: (isTyping: boolean) => void,
  options: TypingThrottleOptions = {},
): TypingThrottle {
  const intervalMs = options.intervalMs ?? TYPING_INTERVAL_MS;
  const now = options.now ?? Date.now;
  let lastTrueAt: number | null = null;
  let active = false;
  return {
    input() {
      const t = now();
      if (lastTrueAt !== null && t - lastTrueAt < intervalMs) return;
      lastTrueAt = t;
      active = true;
      send(true);
    },
    stop() {
      if (!active) return;
      active = false;
      lastTrueAt = null;
      send(false);
    },
    get active() {
      return active;
    },
  };
}
