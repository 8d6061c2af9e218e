import { afterEach, describe, expect, it } from "vitest";
import { Backoff } from "../lib/backoff";
import { createChatStore, type ChatStore, type ConnectionState } from "../store/chat";
import { createFakeServer, memoryStorage, waitFor, type FakeServer } from "../test/fakeServer";
import { ChatSession, type WakeSource } from "./session";
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

function connect(
  server: FakeServer,
  name: string,
  options: { backoff?: Backoff; wake?: WakeSource } = {},
): Client {
  const store = createChatStore({ storage: memoryStorage(), defaultDisplayName: () => name });
  const states: ConnectionState[] = [];
  store.subscribe((s, prev) => {
    if (s.connection !== prev.connection) states.push(s.connection);
  });
  const transport = server.transport(() => store.getState().self.token);
  const session = new ChatSession({
    store,
    clients: createApiClients(transport),
    backoff: options.backoff ?? new Backoff({ baseMs: 5, maxMs: 20 }),
    ...(options.wake ? { wake: options.wake } : {}),
    sendRetryMs: 10,
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
