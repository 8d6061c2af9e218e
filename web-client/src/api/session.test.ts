import { Code } from "@connectrpc/connect";
import { afterEach, describe, expect, it } from "vitest";
import { Backoff } from "../lib/backoff";
import {
  createChatStore,
  type ChatStore,
  type ConnectionState,
  type MessageState,
} from "../store/chat";
import { createFakeServer, memoryStorage, waitFor, type FakeServer } from "../test/fakeServer";
import { ChatSession, type ChatSessionOptions, type WakeSource } from "./session";
import { createApiClients } from "./transport";

const running: ChatSession[] = [];

afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.stop()));
});

/** A wake source the test fires by hand (stands in for `online` / visibilitychange). */
function manualWake() {
  const listeners = new Set<() => void>();
  const source: WakeSource = (onWake) => {
    listeners.add(onWake);
    return () => listeners.delete(onWake);
  };
  return {
    source,
    fire: () => {
      for (const l of listeners) l();
    },
    count: () => listeners.size,
  };
}

interface Client {
  store: ChatStore;
  session: ChatSession;
  states: ConnectionState[];
  userId: () => string;
}

/** Session options a test may set (the rest are fixed by connect()). */
type TestOptions = Partial<
  Pick<
    ChatSessionOptions,
    "backoff" | "wake" | "receiptDelayMs" | "maxSendAttempts" | "sendTimeoutMs"
  >
>;

function connect(server: FakeServer, name: string, options: TestOptions = {}): Client {
  const store = createChatStore({ storage: memoryStorage(), defaultDisplayName: () => name });
  const states: ConnectionState[] = [];
  store.subscribe((s, prev) => {
    if (s.connection !== prev.connection) states.push(s.connection);
  });
  const transport = server.transport(() => store.getState().self.token);
  const session = new ChatSession({
    store,
    clients: createApiClients(transport),
    sendRetryMs: 10,
    sendRetryMaxMs: 40,
    ...options,
    backoff: options.backoff ?? new Backoff({ baseMs: 5, maxMs: 20 }),
  });
  running.push(session);
  session.start();
  return { store, session, states, userId: () => store.getState().self.userId };
}

const online = (c: Client) => () => c.store.getState().connection.kind === "online";

describe("ChatSession against an in-memory server", () => {
  it("opens a session: Welcome identity, presence, conversations, bearer-authenticated calls", async () => {
    const server = createFakeServer();
    const alice = connect(server, "Alice");
    await waitFor(online(alice), 2000, "alice online");
    const self = alice.store.getState().self;
    expect(self.userId).toMatch(/^user-/);
    expect(self.token).toMatch(/^token-/);
    expect(self.sessionId).toMatch(/^session-/);
    expect(alice.states.map((s) => s.kind)).toEqual(["connecting", "online"]);
    await waitFor(() => server.calls.get("listConversations") === 1, 2000, "list");

    const bob = connect(server, "Bob");
    await waitFor(online(bob), 2000, "bob online");
    await waitFor(
      () => alice.store.getState().users[bob.userId()]?.presence === "online",
      2000,
      "alice sees bob",
    );
    expect(bob.store.getState().users[alice.userId()]?.displayName).toBe("Alice");
    // The total: Bob's from his snapshot, Alice's followed from Bob's change (she sees everyone).
    expect(bob.store.getState().onlineCount).toBe(2);
    expect(alice.store.getState().onlineCount).toBe(2);

    alice.session.sendMessage(bob.userId(), "Hi Bob");
    await waitFor(() => (bob.store.getState().conversations[alice.userId()]?.unread ?? 0) === 1);
    await waitFor(
      () => alice.store.getState().conversations[bob.userId()]?.messages[0]?.status === "delivered",
      2000,
      "delivered",
    );
    expect(server.sendCalls).toHaveLength(1);
    expect(server.sendCalls[0]?.authorized).toBe(true);

    // Bob opens the conversation: history loads, the read mark moves, Alice sees READ.
    await bob.session.openPeer(alice.userId());
    expect(bob.store.getState().conversations[alice.userId()]?.unread).toBe(0);
    await waitFor(
      () => alice.store.getState().conversations[bob.userId()]?.messages[0]?.status === "read",
      2000,
      "read",
    );
    // Only one copy of the message on either side (ack + echo + history).
    expect(alice.store.getState().conversations[bob.userId()]?.messages).toHaveLength(1);
    expect(bob.store.getState().conversations[alice.userId()]?.messages).toHaveLength(1);
  });

  it("reconnects with backoff after the server ends the stream, and resets it after Welcome", async () => {
    const server = createFakeServer();
    const backoff = new Backoff({ baseMs: 5, maxMs: 20, random: () => 0.5 });
    const alice = connect(server, "Alice", { backoff });
    await waitFor(online(alice));
    const firstUser = alice.userId();

    server.endStreams();
    await waitFor(() => alice.session.welcomes === 2, 2000, "second welcome");
    await waitFor(online(alice));
    const kinds = alice.states.map((s) => s.kind);
    expect(kinds).toEqual(["connecting", "online", "reconnecting", "connecting", "online"]);
    const reconnecting = alice.states[2];
    expect(reconnecting?.kind === "reconnecting" && reconnecting.retryAt > 0).toBe(true);
    expect(backoff.attempt).toBe(0); // reset by the Welcome
    // The same user, with the token from the first Welcome.
    expect(alice.userId()).toBe(firstUser);
    expect(server.calls.get("subscribe")).toBe(2);
    await waitFor(
      () => server.calls.get("listConversations") === 2,
      2000,
      "refresh after reconnect",
    );
  });

  it("treats a stream silent for longer than the idle timeout as dead and reconnects", async () => {
    const server = createFakeServer();
    const store = createChatStore({ storage: memoryStorage(), defaultDisplayName: () => "Idle" });
    const session = new ChatSession({
      store,
      clients: createApiClients(server.transport(() => store.getState().self.token)),
      backoff: new Backoff({ baseMs: 5, maxMs: 20 }),
      idleTimeoutMs: 40,
    });
    running.push(session);
    session.start();
    await waitFor(() => session.welcomes >= 2, 2000, "reconnect after silence");
    expect(server.calls.get("subscribe")).toBeGreaterThanOrEqual(2);
  });

  it("backs off while the server is down, and reconnects at once on a wake-up", async () => {
    const server = createFakeServer();
    const wake = manualWake();
    // Long delays: only the wake-up can bring it back within the test's time.
    const backoff = new Backoff({ baseMs: 60_000, maxMs: 60_000, random: () => 0.99 });
    const alice = connect(server, "Alice", { backoff, wake: wake.source });
    await waitFor(online(alice));
    expect(wake.count()).toBe(1);

    server.down = true;
    server.endStreams();
    await waitFor(() => alice.store.getState().connection.kind === "reconnecting");
    const state = alice.store.getState().connection;
    expect(state.kind === "reconnecting" && state.retryAt - Date.now() > 30_000).toBe(true);

    wake.fire(); // still down: the attempt fails and it waits again
    await waitFor(() => server.calls.get("subscribe") === 2, 2000, "second attempt");
    await waitFor(() => alice.store.getState().connection.kind === "reconnecting");
    expect(alice.session.welcomes).toBe(1);

    server.down = false;
    wake.fire();
    await waitFor(() => alice.session.welcomes === 2, 2000, "welcome after wake");
    await alice.session.stop();
    expect(wake.count()).toBe(0);
    expect(alice.store.getState().connection.kind).toBe("idle");
  });

  it("queues messages written while disconnected and sends each once with its client_msg_id", async () => {
    const server = createFakeServer();
    const wake = manualWake();
    const backoff = new Backoff({ baseMs: 60_000, maxMs: 60_000, random: () => 0.99 });
    const bob = connect(server, "Bob");
    await waitFor(online(bob));
    const alice = connect(server, "Alice", { backoff, wake: wake.source });
    await waitFor(online(alice));
    await alice.session.openPeer(bob.userId());

    server.down = true;
    server.endStreams();
    await waitFor(() => alice.store.getState().connection.kind === "reconnecting");
    const first = alice.session.sendMessage(bob.userId(), "one");
    const second = alice.session.sendMessage(bob.userId(), "two");
    expect(alice.store.getState().outbox).toEqual([first, second]);
    const pending = alice.store.getState().conversations[bob.userId()]?.messages ?? [];
    expect(pending.map((m) => m.status)).toEqual(["sending", "sending"]);
    await new Promise((r) => setTimeout(r, 30));
    expect(server.sendCalls).toHaveLength(0); // nothing is sent while offline

    server.down = false;
    wake.fire();
    await waitFor(() => alice.store.getState().outbox.length === 0, 2000, "outbox flushed");
    await waitFor(() => server.calls.get("getHistory") === 2, 2000, "open peer refreshed");
    await new Promise((r) => setTimeout(r, 30));
    expect(server.sendCalls.map((c) => [c.clientMsgId, c.text])).toEqual([
      [first, "one"],
      [second, "two"],
    ]);
    const messages = alice.store.getState().conversations[bob.userId()]?.messages ?? [];
    expect(messages.map((m) => [m.clientMsgId, m.seq])).toEqual([
      [first, 1n],
      [second, 2n],
    ]);
    // Bob's session came back too (his stream was ended) and has each message once.
    await waitFor(() => bob.store.getState().conversations[alice.userId()]?.messages.length === 2);
    await waitFor(
      () =>
        messages.length === 2 &&
        alice.store
          .getState()
          .conversations[bob.userId()]?.messages.every((m) => m.status === "delivered") === true,
      2000,
      "delivered",
    );
  });

  it("marks a message FAILED when the server refuses it, and retry sends the same id", async () => {
    const server = createFakeServer();
    const alice = connect(server, "Alice");
    await waitFor(online(alice));
    const id = alice.session.sendMessage("user-nobody", "hello?");
    await waitFor(
      () => alice.store.getState().conversations["user-nobody"]?.messages[0]?.status === "failed",
    );
    const failed = alice.store.getState().conversations["user-nobody"]?.messages[0];
    expect(failed?.error?.code).toBe("NOT_FOUND");
    expect(alice.store.getState().outbox).toEqual([]);

    server.addUser("user-nobody", "Nobody");
    alice.session.retryMessage(id);
    await waitFor(
      () => alice.store.getState().conversations["user-nobody"]?.messages[0]?.status === "sent",
    );
    expect(server.sendCalls.map((c) => c.clientMsgId)).toEqual([id, id]);
  });

  it("keeps a rate-limited message queued, says slow down, and sends it once allowed", async () => {
    const server = createFakeServer();
    const alice = connect(server, "Alice");
    const bob = connect(server, "Bob");
    await waitFor(online(alice));
    await waitFor(online(bob));
    server.rateLimitedSends = 2;
    const id = alice.session.sendMessage(bob.userId(), "not so fast");
    await waitFor(
      () => (bob.store.getState().conversations[alice.userId()]?.unread ?? 0) === 1,
      2000,
      "delivered after the refusals",
    );
    expect(server.sendCalls.map((c) => c.clientMsgId)).toEqual([id, id, id]);
    expect(alice.store.getState().lastError?.code).toBe("RESOURCE_EXHAUSTED");
    expect(alice.store.getState().outbox).toEqual([]);
  });

  it("sends typing at most once per interval, then false once, and the peer sees it", async () => {
    const server = createFakeServer();
    const alice = connect(server, "Alice");
    const bob = connect(server, "Bob");
    await waitFor(online(alice));
    await waitFor(online(bob));
    for (let i = 0; i < 10; i++) alice.session.typed(bob.userId());
    await waitFor(() => bob.store.getState().conversations[alice.userId()]?.peerTyping === true);
    alice.session.stoppedTyping(bob.userId());
    alice.session.stoppedTyping(bob.userId());
    await waitFor(() => bob.store.getState().conversations[alice.userId()]?.peerTyping === false);
    expect(server.calls.get("setTyping")).toBe(2);
  });

  it("starts as a new user when the server refuses the stored token", async () => {
    const server = createFakeServer();
    server.addUser("user-old", "Old");
    const storage = memoryStorage();
    storage.setItem(
      "fastchat.self",
      JSON.stringify({ userId: "user-old", displayName: "Old", token: "wrong", sessionId: "" }),
    );
    const store = createChatStore({ storage });
    const session = new ChatSession({
      store,
      clients: createApiClients(server.transport(() => store.getState().self.token)),
      backoff: new Backoff({ baseMs: 5, maxMs: 20 }),
    });
    running.push(session);
    session.start();
    await waitFor(() => store.getState().connection.kind === "online");
    expect(store.getState().self.userId).not.toBe("user-old");
    expect(store.getState().self.displayName).toBe("Old");
  });

  it("keeps one stream when restarted before the previous stop finished (StrictMode)", async () => {
    const server = createFakeServer();
    const a = connect(server, "Ann");
    await waitFor(online(a), 2000, "online");
    const stopping = a.session.stop();
    a.session.start();
    await stopping;
    await waitFor(online(a), 2000, "online again");
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(a.store.getState().connection.kind).toBe("online");
    expect(server.sessions.size).toBe(1);
    expect(server.calls.get("subscribe")).toBe(2);
  });

  it("sets the session AWAY and back with SetStatus", async () => {
    const server = createFakeServer();
    const alice = connect(server, "Alice");
    await waitFor(online(alice));
    await alice.session.setAway(true);
    await alice.session.setAway(false);
    expect(server.calls.get("setStatus")).toBe(2);
    expect(alice.store.getState().lastError).toBeNull();
  });
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Statuses of the messages to `peer`, oldest first. */
const statusesOf = (c: Client, peer: string) =>
  c.store.getState().conversations[peer]?.messages.map((m) => m.status) ?? [];

/** Every status each own message of `c` showed, by client_msg_id (from store updates). */
function recordStatuses(c: Client): Map<string, MessageState[]> {
  const seen = new Map<string, MessageState[]>();
  c.store.subscribe((state) => {
    for (const conv of Object.values(state.conversations)) {
      for (const m of conv.messages) {
        if (!m.own) continue;
        const list = seen.get(m.clientMsgId) ?? [];
        if (list.at(-1) !== m.status) list.push(m.status);
        seen.set(m.clientMsgId, list);
      }
    }
  });
  return seen;
}

describe("delivery receipts", () => {
  it("acknowledges a burst with one receipt for the newest seq, on the session's id", async () => {
    const server = createFakeServer();
    server.receiveWindow = 100;
    const alice = connect(server, "Alice");
    const bob = connect(server, "Bob", { receiptDelayMs: 50 });
    await waitFor(online(alice));
    await waitFor(online(bob));

    const burst = [1, 2, 3, 4, 5].map((i) =>
      server.storeMessage(alice.userId(), bob.userId(), `m${i}`),
    );
    await waitFor(() => server.ackCalls.length === 1, 2000, "a receipt");
    await sleep(120); // well past the pause: no second receipt for the same burst
    expect(server.ackCalls).toEqual([
      {
        sessionId: bob.store.getState().self.sessionId,
        upToSeq: burst[4]?.seq,
        authorized: true,
      },
    ]);
    await waitFor(
      () => statusesOf(alice, bob.userId()).join() === Array(5).fill("delivered").join(),
      2000,
      "alice sees DELIVERED",
    );

    const next = [6, 7].map((i) => server.storeMessage(alice.userId(), bob.userId(), `m${i}`));
    await waitFor(() => server.ackCalls.length === 2, 2000, "a receipt for the second burst");
    await sleep(120);
    expect(server.ackCalls.map((c) => c.upToSeq)).toEqual([burst[4]?.seq, next[1]?.seq]);
    // Alice's echoes of her own messages are not acknowledged by her.
    const aliceSession = alice.store.getState().self.sessionId;
    expect(server.ackCalls.some((c) => c.sessionId === aliceSession)).toBe(false);
  });

  it("sends a receipt once half the window is unacknowledged, without waiting for the pause", async () => {
    const server = createFakeServer();
    server.receiveWindow = 4;
    const alice = connect(server, "Alice");
    // A pause longer than the test: only the half-window rule can send a receipt in time.
    const bob = connect(server, "Bob", { receiptDelayMs: 60_000 });
    await waitFor(online(alice));
    await waitFor(online(bob));

    const first = server.storeMessage(alice.userId(), bob.userId(), "one");
    await sleep(30);
    expect(server.ackCalls).toHaveLength(0);
    const second = server.storeMessage(alice.userId(), bob.userId(), "two");
    await waitFor(() => server.ackCalls.length === 1, 2000, "a receipt at half the window");
    expect(server.ackCalls[0]?.upToSeq).toBe(second.seq);
    expect(first.seq < second.seq).toBe(true);

    // Many more than the window: the server holds what does not fit until receipts make room,
    // and every message still arrives.
    for (let i = 0; i < 10; i++) server.storeMessage(alice.userId(), bob.userId(), `more ${i}`);
    await waitFor(
      () => bob.store.getState().conversations[alice.userId()]?.messages.length === 12,
      2000,
      "all twelve reach bob",
    );
    await waitFor(
      () => statusesOf(alice, bob.userId()).every((s) => s === "delivered"),
      2000,
      "all delivered",
    );
  });

  it("shows a message sent again on the next session once, acknowledges it there, then DELIVERED", async () => {
    const server = createFakeServer();
    const alice = connect(server, "Alice");
    const bob = connect(server, "Bob", { receiptDelayMs: 300 });
    await waitFor(online(alice));
    await waitFor(online(bob));

    const message = server.storeMessage(alice.userId(), bob.userId(), "are you there?");
    await waitFor(
      () => bob.store.getState().conversations[alice.userId()]?.messages.length === 1,
      2000,
      "bob has it",
    );
    const firstSession = bob.store.getState().self.sessionId;
    // Bob's connection drops before his receipt is sent: the message is not delivered.
    server.endStreams(bob.userId());
    expect(statusesOf(alice, bob.userId()).join()).toBe("sent");
    await waitFor(() => bob.session.welcomes === 2, 2000, "bob reconnects");
    await waitFor(() => server.ackCalls.length === 1, 2000, "a receipt on the new session");
    const secondSession = bob.store.getState().self.sessionId;
    expect(secondSession).not.toBe(firstSession);

    const sentTo = server.deliveries.filter((d) => d.messageId === message.messageId);
    expect(sentTo.map((d) => d.sessionId)).toEqual([firstSession, secondSession]);
    const conv = bob.store.getState().conversations[alice.userId()];
    expect(conv?.messages.map((m) => m.messageId)).toEqual([message.messageId]);
    expect(conv?.unread).toBe(1); // counted once
    expect(server.ackCalls).toEqual([
      { sessionId: secondSession, upToSeq: message.seq, authorized: true },
    ]);
    await waitFor(
      () => statusesOf(alice, bob.userId()).join() === "delivered",
      2000,
      "alice sees DELIVERED",
    );
  });

  it("sends a failed receipt again, and none to a server that grants no receive window", async () => {
    const server = createFakeServer();
    server.failedAcks = 1;
    const alice = connect(server, "Alice");
    const bob = connect(server, "Bob", { receiptDelayMs: 10 });
    await waitFor(online(alice));
    await waitFor(online(bob));
    const m = server.storeMessage(alice.userId(), bob.userId(), "hi");
    await waitFor(() => server.ackCalls.length === 2, 3000, "the receipt sent again");
    expect(server.ackCalls.map((c) => c.upToSeq)).toEqual([m.seq, m.seq]);
    await waitFor(() => statusesOf(alice, bob.userId()).join() === "delivered");
    expect(bob.store.getState().lastError).toBeNull(); // receipts never bother the person

    const older = createFakeServer();
    older.receiptsSupported = false;
    const carol = connect(older, "Carol", { receiptDelayMs: 10 });
    const dave = connect(older, "Dave", { receiptDelayMs: 10 });
    await waitFor(online(carol));
    await waitFor(online(dave));
    older.storeMessage(carol.userId(), dave.userId(), "hello");
    await waitFor(() => dave.store.getState().conversations[carol.userId()]?.messages.length === 1);
    await sleep(50);
    expect(older.ackCalls).toHaveLength(0);
    expect(dave.store.getState().lastError).toBeNull();
  });
});

describe("sending through failures", () => {
  it("sends again with the same client_msg_id when the answer is lost, and shows the stored message", async () => {
    const server = createFakeServer();
    const alice = connect(server, "Alice", { sendTimeoutMs: 50 });
    const bob = connect(server, "Bob", { receiptDelayMs: 10 });
    await waitFor(online(alice));
    await waitFor(online(bob));
    const seen = recordStatuses(alice);
    // Stored, but no answer in time (DEADLINE_EXCEEDED); then an answer lost (UNAVAILABLE).
    server.sendFaults = [
      { failure: "hang", stored: true },
      { failure: Code.Unavailable, stored: true },
    ];
    const id = alice.session.sendMessage(bob.userId(), "did it go?");
    await waitFor(() => alice.store.getState().outbox.length === 0, 3000, "answered");

    const stored = server.conversation(alice.userId(), bob.userId()).messages;
    expect(stored.map((m) => m.clientMsgId)).toEqual([id]); // stored once
    expect(server.sendCalls.map((c) => c.clientMsgId)).toEqual([id, id, id]);
    const shown = alice.store.getState().conversations[bob.userId()]?.messages ?? [];
    expect(shown.map((m) => [m.clientMsgId, m.messageId, m.seq])).toEqual([
      [id, stored[0]?.messageId, stored[0]?.seq],
    ]);
    // Bob had acknowledged it meanwhile: the retry's answer says DELIVERED.
    await waitFor(() => statusesOf(alice, bob.userId()).join() === "delivered");
    expect(seen.get(id)).not.toContain("failed");
    expect(bob.store.getState().conversations[alice.userId()]?.messages).toHaveLength(1);
  });

  it("sends again after UNAVAILABLE and a network error without showing FAILED", async () => {
    const server = createFakeServer();
    const alice = connect(server, "Alice");
    const bob = connect(server, "Bob");
    await waitFor(online(alice));
    await waitFor(online(bob));
    const seen = recordStatuses(alice);
    server.sendFaults = [
      { failure: Code.Unavailable, stored: false },
      { failure: "network", stored: false },
    ];
    const id = alice.session.sendMessage(bob.userId(), "third time lucky");
    await waitFor(() => statusesOf(alice, bob.userId()).join() === "delivered", 3000);
    // The network error never reached the server.
    expect(server.sendCalls.map((c) => c.clientMsgId)).toEqual([id, id]);
    expect(seen.get(id)).toEqual(["sending", "sent", "delivered"]);
  });

  it("shows FAILED after the last attempt, and Retry then shows the message the server stored", async () => {
    const server = createFakeServer();
    const alice = connect(server, "Alice", { maxSendAttempts: 3 });
    const bob = connect(server, "Bob");
    await waitFor(online(alice));
    await waitFor(online(bob));
    server.sendFaults = [
      { failure: Code.DeadlineExceeded, stored: true },
      { failure: Code.Unavailable, stored: true },
      { failure: Code.Unavailable, stored: true },
    ];
    const id = alice.session.sendMessage(bob.userId(), "stored after all");
    await waitFor(() => statusesOf(alice, bob.userId()).join() === "failed", 3000, "failed");
    expect(server.sendCalls).toHaveLength(3);
    const failed = alice.store.getState().conversations[bob.userId()]?.messages[0];
    expect(failed?.error?.code).toBe("UNAVAILABLE");
    expect(alice.store.getState().outbox).toEqual([]);

    alice.session.retryMessage(id);
    const stored = server.conversation(alice.userId(), bob.userId()).messages;
    await waitFor(() => statusesOf(alice, bob.userId()).join() === "delivered", 3000);
    expect(server.sendCalls.map((c) => c.clientMsgId)).toEqual([id, id, id, id]);
    expect(stored).toHaveLength(1);
    const shown = alice.store.getState().conversations[bob.userId()]?.messages ?? [];
    expect(shown.map((m) => [m.messageId, m.seq, m.error])).toEqual([
      [stored[0]?.messageId, stored[0]?.seq, null],
    ]);
  });
});
