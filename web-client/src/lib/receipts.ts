/**
 * Delivery receipts for one session (Hello.receipts): tells the server "I have every message to me
 * up to seq N" for the messages this session brought, so their senders see DELIVERED.
 *
 * Receipts are cumulative, so they are coalesced: the newest seq is sent `delayMs` (150 ms) after
 * the first message it covers, so a burst costs one receipt; and at once when half of
 * Welcome.receive_window is unacknowledged, because at the full window the server stops sending
 * messages until a receipt comes. One receipt is in flight at a time; what arrives meanwhile goes
 * in the next one, for the newest seq then. A failed receipt is sent again after a backoff (the
 * next one covers it anyway); one the server refuses for good (the session is gone, or receipts
 * are off) ends receipts for the session, whose unacknowledged messages simply come again on the
 * next session. A new session starts a new sender.
 */
import { Backoff } from "./backoff";

export interface ReceiptSenderOptions {
  /** Welcome.receive_window: how many messages may go unacknowledged (at least 1). */
  window: number;
  /** Sends one receipt (ChatService.Acknowledge); rejects when it failed. */
  send: (upToSeq: bigint) => Promise<void>;
  /** Whether a failure is worth another try later (default: every failure is). */
  retryable?: (error: unknown) => boolean;
  /** Longest wait, in ms, between a message and the receipt that covers it (default 150). */
  delayMs?: number;
  /** Waits after failed receipts (default 0.5 s doubling up to 10 s, with jitter). */
  backoff?: Backoff;
}

export const RECEIPT_DELAY_MS = 150;

export class ReceiptSender {
  private readonly send: (upToSeq: bigint) => Promise<void>;
  private readonly retryable: (error: unknown) => boolean;
  private readonly delayMs: number;
  private readonly backoff: Backoff;
  /** Unacknowledged messages at which a receipt goes at once: half the window. */
  private readonly threshold: number;

  /** The newest seq received: what the next receipt says. */
  private newest = 0n;
  /** Messages received that no receipt sent so far covers. */
  private unsent = 0;
  /** Messages the receipt in flight covers (0 when none is in flight). */
  private inFlight = 0;
  private sending = false;
  /** The pause (or a backoff) ran out while a receipt was in flight: send when it is answered. */
  private due = false;
  /** Waiting after a failure: new messages do not cut the wait short. */
  private backingOff = false;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private closed = false;
  /** The newest seq the server has taken a receipt for. */
  acknowledged = 0n;
  /** Receipts sent (answered or not), for tests and diagnostics. */
  sent = 0;

  constructor(options: ReceiptSenderOptions) {
    this.send = options.send;
    this.retryable = options.retryable ?? (() => true);
    this.delayMs = options.delayMs ?? RECEIPT_DELAY_MS;
    this.backoff = options.backoff ?? new Backoff({ baseMs: 500, maxMs: 10_000 });
    this.threshold = Math.max(1, Math.ceil(options.window / 2));
  }

  /** Whether receipts are over for this session (closed, or refused for good). */
  get stopped(): boolean {
    return this.closed;
  }

  /** A message to this user arrived on the session (a duplicate counts too: it was sent again). */
  received(seq: bigint): void {
    if (this.closed) return;
    if (seq > this.newest) this.newest = seq;
    this.unsent += 1;
    if (!this.sending && !this.backingOff && this.unsent >= this.threshold) {
      this.flush();
    } else {
      this.arm(this.delayMs);
    }
  }

  /** The session ended: no more receipts, and an answer still coming changes nothing. */
  close(): void {
    this.closed = true;
    this.clearTimer();
  }

  private arm(ms: number): void {
    if (this.timer || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.backingOff = false;
      this.flush();
    }, ms);
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private flush(): void {
    if (this.closed || this.unsent === 0) return;
    if (this.sending) {
      this.due = true;
      return;
    }
    this.clearTimer();
    this.due = false;
    const upTo = this.newest;
    this.inFlight = this.unsent;
    this.unsent = 0;
    this.sending = true;
    this.sent += 1;
    this.send(upTo).then(
      () => {
        this.answered();
        if (upTo > this.acknowledged) this.acknowledged = upTo;
        this.backoff.reset();
        if (this.closed) return;
        if (this.due || this.unsent >= this.threshold) this.flush();
        else if (this.unsent > 0) this.arm(this.delayMs);
      },
      (error: unknown) => {
        // Still unacknowledged: the next receipt covers them.
        this.unsent += this.inFlight;
        this.answered();
        if (this.closed) return;
        if (!this.retryable(error)) {
          this.close();
          return;
        }
        this.clearTimer();
        this.due = false;
        this.backingOff = true;
        this.arm(this.backoff.next());
      },
    );
  }

  private answered(): void {
    this.sending = false;
    this.inFlight = 0;
  }
}
