/**
 * The connection manager. It keeps one `Subscribe` stream open (the browser's one server stream;
 * everything else is unary), feeds its events to the store, and when the stream ends or fails it
 * reconnects with exponential backoff and full jitter, or at once when the browser comes back
 * online or the tab becomes visible. After every Welcome it resets the backoff, sends the queued
 * messages with their original client_msg_id, and refreshes the conversations (ListConversations,
 * plus GetHistory for the open one) so nothing sent meanwhile is missed.
 *
 * Delivery receipts: the Hello asks for them, and for each session whose Welcome grants a receive
 * window a ReceiptSender acknowledges the messages to this user that the stream brought
 * (Acknowledge with the session's id). What a session did not get acknowledged comes again on
 * the next one; the store drops those by seq, and they are acknowledged again.
 *
 * Sending: a send that fails for a transient reason (no answer in time, server unavailable, a
 * network error) stays queued and is sent again with the same client_msg_id after a backoff, at
 * most `maxSendAttempts` times; the server stores a client_msg_id once, so a retry of a message
 * it did store answers with that message. Only after the last attempt does it show FAILED.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { PresenceStatus } from "../gen/fastchat/v1/presence_pb";
import type { Welcome } from "../gen/fastchat/v1/chat_pb";
import { Backoff } from "../lib/backoff";
import { ReceiptSender } from "../lib/receipts";
import { createTypingThrottle, type TypingThrottle } from "../lib/typingThrottle";
import type { ApiError, ChatStore } from "../store/chat";
import type { ApiClients } from "./transport";

/** Calls `onWake` whenever reconnecting at once is worth a try; returns an unsubscribe. */
export type WakeSource = (onWake: () => void) => () => void;

/** Browser wake-ups: the `online` event, and the tab becoming visible. */
export const browserWakeSource: WakeSource = (onWake) => {
  const onVisibility = () => {
    if (document.visibilityState === "visible") onWake();
  };
  window.addEventListener("online", onWake);
  document.addEventListener("visibilitychange", onVisibility);
  return () => {
    window.removeEventListener("online", onWake);
    document.removeEventListener("visibilitychange", onVisibility);
  };
};

export interface ChatSessionOptions {
  store: ChatStore;
  clients: ApiClients;
  backoff?: Backoff;
  wake?: WakeSource;
  now?: () => number;
  /** A stream silent this long (ms) counts as dead; the server sends heartbeats every 20 s. */
  idleTimeoutMs?: number;
  /** Ceiling (ms) of the first wait before sending again after a transient failure (default 1 s). */
  sendRetryMs?: number;
  /** The wait's ceiling doubles per failure up to this (ms, default 30 s). */
  sendRetryMaxMs?: number;
  /** Sends of one message that may fail for a transient reason before it shows FAILED (8). */
  maxSendAttempts?: number;
  /** A SendMessage unanswered this long (ms) fails with DEADLINE_EXCEEDED (default 15 s). */
  sendTimeoutMs?: number;
  /** Longest wait (ms) between a message to this user and its receipt (default 150). */
  receiptDelayMs?: number;
  /** GetHistory page size. */
  historyPageSize?: number;
  /** Typing throttle clock and interval (tests). */
  typingIntervalMs?: number;
}

/** Codes that say "the server or the network is not there right now": try again later. */
const TRANSIENT = new Set<Code>([
  Code.Unavailable,
  Code.Unknown,
  Code.Canceled,
  Code.DeadlineExceeded,
  Code.Aborted,
]);

/**
 * Acknowledge refusals that another try would meet again: the session is gone (NOT_FOUND), has no
 * receipts (FAILED_PRECONDITION), the server has no Acknowledge (UNIMPLEMENTED), or the caller is
 * not who it was. Receipts end for that session; anything else is tried again after a backoff.
 */
const FINAL_FOR_RECEIPTS = new Set<Code>([
  Code.NotFound,
  Code.FailedPrecondition,
  Code.Unimplemented,
  Code.InvalidArgument,
  Code.Unauthenticated,
  Code.PermissionDenied,
]);

/** A ConnectError as the store's ApiError (code in UPPER_SNAKE like the stream's ErrorEvent). */
export function toApiError(err: unknown): ApiError {
  const e = ConnectError.from(err);
  const code = Code[e.code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
  return { code, message: e.rawMessage, retryAfterMs: 0, field: "" };
}

export class ChatSession {
  private readonly store: ChatStore;
  private readonly clients: ApiClients;
  private readonly backoff: Backoff;
  private readonly wake: WakeSource | undefined;
  private readonly now: () => number;
  private readonly idleTimeoutMs: number;
  private readonly sendBackoff: Backoff;
  private readonly maxSendAttempts: number;
  private readonly sendTimeoutMs: number;
  private readonly receiptDelayMs: number | undefined;
  private readonly historyPageSize: number;
  private readonly typingIntervalMs: number | undefined;

  private running = false;
  /** Bumped by every start(), so a loop left over from a quick stop()+start() ends by itself. */
  private generation = 0;
  private stream: AbortController | null = null;
  private wakeSleep: (() => void) | null = null;
  private unsubscribeWake: (() => void) | null = null;
  private loop: Promise<void> | null = null;
  private flushing: Promise<void> | null = null;
  private flushAgain = false;
  private sendRetryTimer: ReturnType<typeof setTimeout> | null = null;
  /** Transient failures so far of each queued message, by client_msg_id. */
  private readonly sendFailures = new Map<string, number>();
  private readonly typing = new Map<string, TypingThrottle>();
  /** Welcomes seen (1 after the first connection; more after reconnects). */
  welcomes = 0;

  constructor(options: ChatSessionOptions) {
    this.store = options.store;
    this.clients = options.clients;
    this.backoff = options.backoff ?? new Backoff();
    this.wake = options.wake;
    this.now = options.now ?? Date.now;
    this.idleTimeoutMs = options.idleTimeoutMs ?? 45_000;
    this.sendBackoff = new Backoff({
      baseMs: options.sendRetryMs ?? 1_000,
      maxMs: Math.max(options.sendRetryMaxMs ?? 30_000, options.sendRetryMs ?? 1_000),
    });
    this.maxSendAttempts = options.maxSendAttempts ?? 8;
    this.sendTimeoutMs = options.sendTimeoutMs ?? 15_000;
    this.receiptDelayMs = options.receiptDelayMs;
    this.historyPageSize = options.historyPageSize ?? 50;
    this.typingIntervalMs = options.typingIntervalMs;
  }

  /** Opens the stream and keeps it open until stop(). */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.unsubscribeWake =
      this.wake?.(() => {
        this.reconnectNow();
      }) ?? null;
    this.generation += 1;
    this.loop = this.run(this.generation);
  }

  /** Closes the stream for good; resolves when the loop has ended. */
  async stop(): Promise<void> {
    this.running = false;
    this.unsubscribeWake?.();
    this.unsubscribeWake = null;
    if (this.sendRetryTimer) clearTimeout(this.sendRetryTimer);
    this.sendRetryTimer = null;
    this.stream?.abort();
    this.wakeSleep?.();
    await this.loop;
    // start() may have been called again meanwhile (React StrictMode remounts): keep its state.
    if (!this.isRunning()) this.store.getState().setConnection({ kind: "idle" });
  }

  /** Skips the wait before the next attempt (no effect while connected). */
  reconnectNow(): void {
    this.wakeSleep?.();
  }

  /** Ends the current stream and connects again (for example after a rename). */
  restart(): void {
    this.stream?.abort();
  }

  private async run(generation: number): Promise<void> {
    let attempt = 0;
    while (this.isCurrent(generation)) {
      const stream = new AbortController();
      this.stream = stream;
      this.store.getState().setConnection({ kind: "connecting", attempt });
      let reason = "the connection ended";
      try {
        await this.subscribeOnce(stream);
      } catch (err) {
        if (!this.isCurrent(generation)) break;
        const e = ConnectError.from(err);
        reason = e.rawMessage || Code[e.code];
        if (e.code === Code.Unauthenticated || e.code === Code.PermissionDenied) {
          // The server no longer knows this token (new database): start as a new user.
          this.store.getState().forgetCredentials();
        }
      } finally {
        if (this.stream === stream) this.stream = null;
      }
      if (!this.isCurrent(generation)) break;
      attempt += 1;
      const delay = this.backoff.next();
      this.store
        .getState()
        .setConnection({ kind: "reconnecting", attempt, retryAt: this.now() + delay, reason });
      await this.sleep(delay);
    }
  }

  private async subscribeOnce(stream: AbortController): Promise<void> {
    const { self } = this.store.getState();
    const idle: { timer: ReturnType<typeof setTimeout> | null } = { timer: null };
    const armIdle = () => {
      if (idle.timer) clearTimeout(idle.timer);
      if (this.idleTimeoutMs > 0) {
        idle.timer = setTimeout(() => {
          stream.abort();
        }, this.idleTimeoutMs);
      }
    };
    armIdle();
    /** This stream's receipts (a local: a stream left over from a quick restart has its own). */
    let receipts: ReceiptSender | null = null;
    try {
      const events = this.clients.chat.subscribe(
        {
          hello: {
            userId: self.userId,
            displayName: self.displayName,
            token: self.token,
            receipts: true,
          },
        },
        { signal: stream.signal },
      );
      for await (const event of events) {
        armIdle();
        const e = event.event;
        this.store.getState().applyServerEvent(event);
        if (e.case === "welcome") {
          this.welcomes += 1;
          this.backoff.reset();
          receipts?.close();
          receipts = this.receiptsFor(e.value);
          void this.afterWelcome();
        } else if (e.case === "message" && e.value.toUserId === this.store.getState().self.userId) {
          // Acknowledged even when the store already had it: the server sent it on this session.
          receipts?.received(e.value.seq);
        }
      }
    } finally {
      if (idle.timer) clearTimeout(idle.timer);
      receipts?.close();
    }
  }

  /** A receipt sender for the session this Welcome opened; null when it has no receipts. */
  private receiptsFor(welcome: Welcome): ReceiptSender | null {
    if (welcome.receiveWindow === 0) return null; // not granted (an older server, no history)
    const sessionId = welcome.sessionId;
    return new ReceiptSender({
      window: welcome.receiveWindow,
      send: async (upToSeq) => {
        await this.clients.chat.acknowledge(
          { sessionId, upToSeq },
          { timeoutMs: this.sendTimeoutMs },
        );
      },
      retryable: (err) => !FINAL_FOR_RECEIPTS.has(ConnectError.from(err).code),
      ...(this.receiptDelayMs === undefined ? {} : { delayMs: this.receiptDelayMs }),
    });
  }

  /** Waits `ms`, or less if woken. */
  private sleep(ms: number): Promise<void> {
    let wake: (() => void) | null = null;
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
      this.wakeSleep = wake;
    }).finally(() => {
      if (this.wakeSleep === wake) this.wakeSleep = null;
    });
  }

  /** Read through a method: the field changes while awaits are pending. */
  private isRunning(): boolean {
    return this.running;
  }

  /** Whether the loop of start() number `generation` should go on. */
  private isCurrent(generation: number): boolean {
    return this.running && this.generation === generation;
  }

  private flushRequested(): boolean {
    return this.flushAgain;
  }

  private isOnline(): boolean {
    return this.store.getState().connection.kind === "online";
  }

  private async afterWelcome(): Promise<void> {
    await Promise.all([this.flush(), this.refresh()]);
  }

  /** Refreshes the conversation list, and the open conversation's newest page. */
  async refresh(): Promise<void> {
    try {
      const list = await this.clients.chat.listConversations({});
      this.store.getState().applyConversations(list.conversations);
      const open = this.store.getState().openPeerId;
      if (open) await this.loadNewest(open);
    } catch (err) {
      this.store.getState().setError(toApiError(err));
    }
  }

  // --- Sending -------------------------------------------------------------------------------

  /** Writes a message: shown at once as SENDING, sent now when online, otherwise on reconnect. */
  sendMessage(peerId: string, text: string): string {
    this.typing.get(peerId)?.stop();
    const id = this.store.getState().queueMessage(peerId, text);
    void this.flush();
    return id;
  }

  /** Sends a FAILED message again with its original client_msg_id. */
  retryMessage(clientMsgId: string): void {
    this.sendFailures.delete(clientMsgId);
    this.store.getState().retryMessage(clientMsgId);
    void this.flush();
  }

  /** Sends the outbox in order, each message at most once at a time. */
  flush(): Promise<void> {
    if (this.flushing) {
      this.flushAgain = true;
      return this.flushing;
    }
    this.flushing = this.flushLoop().finally(() => {
      this.flushing = null;
    });
    return this.flushing;
  }

  private async flushLoop(): Promise<void> {
    do {
      this.flushAgain = false;
      for (const id of [...this.store.getState().outbox]) {
        if (!this.running || !this.isOnline()) return;
        const state = this.store.getState();
        if (!state.outbox.includes(id)) {
          this.sendFailures.delete(id); // an echo or ack took it meanwhile
          continue;
        }
        const message = Object.values(state.conversations)
          .flatMap((c) => c.messages)
          .find((m) => m.own && m.clientMsgId === id);
        if (!message) {
          this.store.getState().removeFromOutbox(id);
          continue;
        }
        try {
          const ack = await this.clients.chat.sendMessage(
            { clientMsgId: id, toUserId: message.toUserId, text: message.text },
            { timeoutMs: this.sendTimeoutMs },
          );
          this.sendFailures.delete(id);
          this.sendBackoff.reset();
          // A retry of a message the server stored answers with it: the ack shows it stored.
          this.store.getState().applyAck(ack);
        } catch (err) {
          const e = ConnectError.from(err);
          if (TRANSIENT.has(e.code)) {
            const failures = (this.sendFailures.get(id) ?? 0) + 1;
            if (failures < this.maxSendAttempts) {
              // Keep it queued (order matters): the next Welcome or the retry timer sends it.
              this.sendFailures.set(id, failures);
              this.scheduleSendRetry();
              return;
            }
            // Out of attempts: FAILED, with a retry button (same client_msg_id). Should the
            // server have stored it after all, its echo or history shows it sent.
            this.sendFailures.delete(id);
            this.store.getState().markFailed(id, toApiError(e));
            continue;
          }
          if (e.code === Code.ResourceExhausted) {
            // Rate limited: the allowance grows back within seconds, so say so and send it then.
            this.store.getState().setError(toApiError(e));
            this.scheduleSendRetry();
            return;
          }
          this.sendFailures.delete(id);
          this.store.getState().markFailed(id, toApiError(e));
        }
      }
    } while (this.flushRequested());
  }

  private scheduleSendRetry(): void {
    if (this.sendRetryTimer || !this.running) return;
    this.sendRetryTimer = setTimeout(() => {
      this.sendRetryTimer = null;
      void this.flush();
    }, this.sendBackoff.next());
  }

  // --- Reading, history, typing, presence ----------------------------------------------------

  /** Shows a conversation: loads its newest page and marks it read. */
  async openPeer(peerId: string | null): Promise<void> {
    this.store.getState().setOpenPeer(peerId);
    if (!peerId) return;
    try {
      await this.loadNewest(peerId);
    } catch (err) {
      this.store.getState().setError(toApiError(err));
      return;
    }
    await this.markRead(peerId);
  }

  private async loadNewest(peerId: string): Promise<void> {
    const page = await this.clients.chat.getHistory({
      peerUserId: peerId,
      beforeSeq: 0n,
      limit: this.historyPageSize,
    });
    this.store.getState().applyHistory(peerId, page, false);
  }

  /** Loads the page before the oldest loaded message; returns whether older ones remain. */
  async loadOlder(peerId: string): Promise<boolean> {
    const conv = this.store.getState().conversations[peerId];
    const oldest = conv?.messages.find((m) => m.seq !== null)?.seq ?? 0n;
    if (conv?.hasMoreHistory === false || oldest === 1n) return false;
    const page = await this.clients.chat.getHistory({
      peerUserId: peerId,
      beforeSeq: oldest,
      limit: this.historyPageSize,
    });
    this.store.getState().applyHistory(peerId, page, true);
    return page.hasMore;
  }

  /** Moves the read mark up to the newest loaded message from the peer and tells the server. */
  async markRead(peerId: string): Promise<void> {
    const mark = this.store.getState().markRead(peerId);
    if (mark === null) return;
    try {
      await this.clients.chat.markRead({ peerUserId: peerId, upToSeq: mark });
    } catch (err) {
      this.store.getState().setError(toApiError(err));
    }
  }

  private throttle(peerId: string): TypingThrottle {
    let t = this.typing.get(peerId);
    if (!t) {
      t = createTypingThrottle(
        (isTyping) => {
          if (!this.isOnline()) return;
          this.clients.chat.setTyping({ toUserId: peerId, isTyping }).catch(() => {
            // Typing is best effort: the server ends it by itself after 6 s.
          });
        },
        { now: this.now, ...(this.typingIntervalMs ? { intervalMs: this.typingIntervalMs } : {}) },
      );
      this.typing.set(peerId, t);
    }
    return t;
  }

  /** Call on every keystroke in the conversation with `peerId`. */
  typed(peerId: string): void {
    this.throttle(peerId).input();
  }

  /** Call when the person stops typing (cleared, blurred, idle). */
  stoppedTyping(peerId: string): void {
    this.typing.get(peerId)?.stop();
  }

  /** Sets this tab's session AWAY (hidden for a while) or ONLINE. */
  async setAway(away: boolean): Promise<void> {
    const { sessionId } = this.store.getState().self;
    if (!sessionId || !this.isOnline()) return;
    try {
      await this.clients.presence.setStatus({
        status: away ? PresenceStatus.AWAY : PresenceStatus.ONLINE,
        sessionId,
      });
    } catch (err) {
      this.store.getState().setError(toApiError(err));
    }
  }

  /** Changes the display name: the next Hello carries it, so the stream is reopened. */
  rename(name: string): void {
    this.store.getState().setDisplayName(name);
    this.restart();
  }
}
