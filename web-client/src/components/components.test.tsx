// @vitest-environment jsdom
/**
 * Rendering tests of the chat screens against a real store (and, where a session is needed, the
 * real ChatSession over the in-memory fake server).
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { act, cleanup, render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, describe, expect, it } from "vitest";
import { ChatSession } from "../api/session";
import { createApiClients } from "../api/transport";
import {
  ChatMessageSchema,
  MessageStatus,
  SendMessageResponseSchema,
  StatusUpdateSchema,
  TypingEventSchema,
} from "../gen/fastchat/v1/chat_pb";
import { PresenceEventSchema, PresenceStatus } from "../gen/fastchat/v1/presence_pb";
import { Backoff } from "../lib/backoff";
import { createChatStore, type ChatStore } from "../store/chat";
import { createFakeServer, memoryStorage, type FakeServer } from "../test/fakeServer";
import { ChatProvider, type SessionApi } from "./ChatContext";
import { ChatPane } from "./ChatPane";
import { Composer } from "./Composer";
import { ConnectionBanner } from "./ConnectionBanner";
import { UserList } from "./UserList";

const sessions: ChatSession[] = [];

afterEach(async () => {
  cleanup();
  await Promise.all(sessions.splice(0).map((s) => s.stop()));
});

const ME = "me-0001";
const ALEX = "alex-0002";
const BEA = "bea-0003";
const CARL = "carl-0004";

function storeAsMe(): ChatStore {
  const store = createChatStore({ storage: memoryStorage(), defaultDisplayName: () => "Me" });
  store.setState({ self: { userId: ME, displayName: "Me", token: "t", sessionId: "s" } });
  return store;
}

function presence(store: ChatStore, minutesAgo = 5) {
  const lastSeen = timestampFromDate(new Date(Date.now() - minutesAgo * 60_000));
  store.getState().applyPresenceEvent(
    create(PresenceEventSchema, {
      event: {
        case: "snapshot",
        value: {
          users: [
            {
              user: { userId: ALEX, displayName: "Alex" },
              status: PresenceStatus.ONLINE,
              sessions: 1,
            },
            { user: { userId: BEA, displayName: "Bea" }, status: PresenceStatus.AWAY, sessions: 1 },
          ],
        },
      },
    }),
  );
  store.getState().applyPresenceEvent(
    create(PresenceEventSchema, {
      event: {
        case: "change",
        value: {
          presence: {
            user: { userId: CARL, displayName: "Carl" },
            status: PresenceStatus.OFFLINE,
            lastSeen,
          },
        },
      },
    }),
  );
}

function peerMessage(store: ChatStore, from: string, seq: bigint, text: string) {
  store.getState().applyMessage(
    create(ChatMessageSchema, {
      messageId: `m-${from}-${seq}`,
      fromUserId: from,
      toUserId: ME,
      text,
      seq,
      sentAt: timestampFromDate(new Date()),
      status: MessageStatus.SENT,
    }),
  );
}

/** A session that only records what the screens ask of it (for store-only rendering). */
function recordingSession(store: ChatStore) {
  const calls: string[] = [];
  const session: SessionApi = {
    sendMessage: (peerId, text) => {
      calls.push(`send ${peerId} ${text}`);
      return store.getState().queueMessage(peerId, text);
    },
    retryMessage: (id) => {
      calls.push(`retry ${id}`);
      store.getState().retryMessage(id);
    },
    openPeer: (peerId) => {
      calls.push(`open ${String(peerId)}`);
      store.getState().setOpenPeer(peerId);
      return Promise.resolve();
    },
    loadOlder: () => Promise.resolve(false),
    markRead: (peerId) => {
      calls.push(`markRead ${peerId}`);
      store.getState().markRead(peerId);
      return Promise.resolve();
    },
    typed: (peerId) => {
      calls.push(`typed ${peerId}`);
    },
    stoppedTyping: (peerId) => {
      calls.push(`stoppedTyping ${peerId}`);
    },
    setAway: () => Promise.resolve(),
    rename: (name) => {
      calls.push(`rename ${name}`);
    },
    reconnectNow: () => {
      calls.push("reconnectNow");
    },
  };
  return { session, calls };
}

describe("UserList", () => {
  it("shows presence, last seen, the last message and unread badges", async () => {
    const store = storeAsMe();
    presence(store, 5);
    peerMessage(store, BEA, 1n, "hi there");
    peerMessage(store, BEA, 2n, "are you around?");
    const { session, calls } = recordingSession(store);
    render(
      <ChatProvider store={store} session={session}>
        <UserList onSelect={(id) => void session.openPeer(id)} />
      </ChatProvider>,
    );

    const alex = screen.getByTestId(`user-${ALEX}`);
    expect(alex.dataset.presence).toBe("online");
    expect(within(alex).getByText("Online")).toBeTruthy();

    const bea = screen.getByTestId(`user-${BEA}`);
    expect(bea.dataset.presence).toBe("away");
    expect(within(bea).getByText("are you around?")).toBeTruthy();
    expect(within(screen.getByTestId(`unread-${BEA}`)).getByText("2")).toBeTruthy();
    expect(screen.queryByTestId(`unread-${ALEX}`)).toBeNull();
    // The snapshot listed everyone: no total line.
    expect(screen.queryByTestId("online-summary")).toBeNull();

    // Offline people without a conversation are not listed; with one they are, with last seen.
    expect(screen.queryByTestId(`user-${CARL}`)).toBeNull();
    act(() => {
      peerMessage(store, CARL, 1n, "bye");
    });
    const carl = screen.getByTestId(`user-${CARL}`);
    expect(carl.dataset.presence).toBe("offline");
    expect(within(carl).getByText("Last seen 5 min ago")).toBeTruthy();

    // Conversations with the newest activity come first; arrow keys move between rows.
    const rows = screen.getAllByRole("option");
    expect(rows[0]?.dataset.testid).toBe(`user-${CARL}`);
    const user = userEvent.setup();
    rows[0]?.focus();
    await user.keyboard("{ArrowDown}");
    expect(document.activeElement).toBe(rows[1]);
    await user.keyboard("{End}");
    expect(document.activeElement).toBe(rows[rows.length - 1]);
    await user.keyboard("{Enter}");
    expect(calls).toContain(`open ${ALEX}`);
  });

  it("says how many are online in all while the server lists only part of them", () => {
    const store = storeAsMe();
    const online = (userId: string, displayName: string) => ({
      user: { userId, displayName },
      status: PresenceStatus.ONLINE,
      sessions: 1,
    });
    store.getState().applyPresenceEvent(
      create(PresenceEventSchema, {
        event: {
          case: "snapshot",
          value: {
            users: [online(ME, "Me"), online(ALEX, "Alex"), online(BEA, "Bea")],
            onlineCount: 2345,
          },
        },
      }),
    );
    const { session } = recordingSession(store);
    render(
      <ChatProvider store={store} session={session}>
        <UserList onSelect={(id) => void session.openPeer(id)} />
      </ChatProvider>,
    );

    // Others only, as the rows: Alex and Bea of the 2,344 people online besides me.
    const summary = screen.getByTestId("online-summary");
    expect(summary.textContent).toBe(`Showing 2 of ${(2344).toLocaleString()} online`);
    expect(within(screen.getByTestId("user-list")).getAllByRole("option")).toHaveLength(2);

    act(() => {
      store.getState().applyPresenceEvent(
        create(PresenceEventSchema, {
          event: { case: "onlineCount", value: { users: 3001 } },
        }),
      );
    });
    expect(screen.getByTestId("online-summary").textContent).toBe(
      `Showing 2 of ${(3000).toLocaleString()} online`,
    );

    // Everyone fits in the list again: the line goes.
    act(() => {
      store
        .getState()
        .applyPresenceEvent(
          create(PresenceEventSchema, { event: { case: "onlineCount", value: { users: 3 } } }),
        );
    });
    expect(screen.queryByTestId("online-summary")).toBeNull();
    expect(screen.getByTestId(`user-${ALEX}`)).toBeTruthy();
  });
});

describe("ChatPane", () => {
  it("shows bubbles with status ticks, retry on failure, and the typing indicator", async () => {
    const store = storeAsMe();
    presence(store);
    peerMessage(store, ALEX, 1n, "hello from Alex");
    const { session, calls } = recordingSession(store);
    store.getState().setOpenPeer(ALEX);
    const s = store.getState();
    const sending = s.queueMessage(ALEX, "still sending");
    const sent = s.queueMessage(ALEX, "one");
    const delivered = s.queueMessage(ALEX, "two");
    const read = s.queueMessage(ALEX, "three");
    const failed = s.queueMessage(ALEX, "refused");
    const ack = (id: string, seq: bigint) => {
      store.getState().applyAck(
        create(SendMessageResponseSchema, {
          clientMsgId: id,
          messageId: `m-${id}`,
          seq,
          sentAt: timestampFromDate(new Date()),
          status: MessageStatus.SENT,
        }),
      );
    };
    ack(read, 2n);
    ack(delivered, 3n);
    ack(sent, 4n);
    store
      .getState()
      .applyStatus(
        create(StatusUpdateSchema, { peerUserId: ALEX, seq: 2n, status: MessageStatus.READ }),
      );
    store
      .getState()
      .applyStatus(
        create(StatusUpdateSchema, { peerUserId: ALEX, seq: 3n, status: MessageStatus.DELIVERED }),
      );
    store.getState().markFailed(failed, {
      code: "RATE_LIMITED",
      message: "",
      retryAfterMs: 3000,
      field: "",
    });

    render(
      <ChatProvider store={store} session={session}>
        <ChatPane peerId={ALEX} />
      </ChatProvider>,
    );

    const peerBubble = screen.getByTestId("message-m-alex-0002-1");
    expect(peerBubble.dataset.own).toBe("false");
    expect(within(peerBubble).getByText("hello from Alex")).toBeTruthy();
    expect(screen.getAllByTestId("day-separator")).toHaveLength(1);
    const status = (id: string) => screen.getByTestId(`status-${id}`).dataset.status;
    expect(status(sending)).toBe("sending");
    expect(status(sent)).toBe("sent");
    expect(status(delivered)).toBe("delivered");
    expect(status(read)).toBe("read");
    expect(status(failed)).toBe("failed");
    expect(screen.getByTestId(`message-${read}`).dataset.messageId).toBe(`m-${read}`);
    // The refusal is in words, never a code.
    expect(screen.getByText("Slow down: try again in 3 s.")).toBeTruthy();
    expect(screen.queryByText(/RATE_LIMITED/)).toBeNull();
    // Opening the conversation marked the peer's message read.
    expect(calls).toContain(`markRead ${ALEX}`);

    await userEvent.setup().click(screen.getByTestId(`retry-${failed}`));
    expect(calls).toContain(`retry ${failed}`);
    expect(status(failed)).toBe("sending");

    expect(screen.queryByTestId("typing-indicator")).toBeNull();
    act(() => {
      store.getState().applyTyping(create(TypingEventSchema, { fromUserId: ALEX, isTyping: true }));
    });
    expect(screen.getByTestId("typing-indicator").textContent).toBe("Alex is typing...");
    act(() => {
      store
        .getState()
        .applyTyping(create(TypingEventSchema, { fromUserId: ALEX, isTyping: false }));
    });
    expect(screen.queryByTestId("typing-indicator")).toBeNull();
  });
});

/** A real session for a new user on the fake server. */
function connect(
  server: FakeServer,
  name: string,
  backoff = new Backoff({ baseMs: 5, maxMs: 20 }),
) {
  const store = createChatStore({ storage: memoryStorage(), defaultDisplayName: () => name });
  const session = new ChatSession({
    store,
    clients: createApiClients(server.transport(() => store.getState().self.token)),
    backoff,
    sendRetryMs: 10,
  });
  sessions.push(session);
  session.start();
  return { store, session };
}

describe("Composer", () => {
  it("sends on Enter, starts a new line on Shift+Enter, and counts near the limit", async () => {
    const server = createFakeServer();
    const bob = server.addUser("bob-0009", "Bob");
    expect(bob).not.toBe("");
    const { store, session } = connect(server, "Ann");
    await waitFor(() => {
      expect(store.getState().connection.kind).toBe("online");
    });
    render(
      <ChatProvider store={store} session={session}>
        <Composer peerId="bob-0009" peerName="Bob" />
      </ChatProvider>,
    );
    const user = userEvent.setup();
    const input = screen.getByTestId("composer-input");
    expect(input.getAttribute("aria-label")).toBe("Message to Bob");

    await user.click(input);
    await user.keyboard("first line{Shift>}{Enter}{/Shift}second line");
    expect((input as HTMLTextAreaElement).value).toBe("first line\nsecond line");
    expect(server.sendCalls).toHaveLength(0);
    expect(server.calls.get("setTyping")).toBe(1); // throttled: one event for many keys

    await user.keyboard("{Enter}");
    expect((input as HTMLTextAreaElement).value).toBe("");
    await waitFor(() => {
      expect(server.sendCalls.map((c) => c.text)).toEqual(["first line\nsecond line"]);
    });
    await waitFor(() => {
      const conv = store.getState().conversations["bob-0009"];
      expect(conv?.messages[0]?.status).toBe("sent");
    });

    // Enter on an empty input sends nothing; the counter shows near 4,000 and blocks over it.
    await user.keyboard("{Enter}");
    expect(server.sendCalls).toHaveLength(1);
    expect(screen.queryByTestId("char-counter")).toBeNull();
    await user.click(input);
    await user.paste("x".repeat(4001));
    expect(screen.getByTestId("char-counter").textContent).toContain("4,001 / 4,000");
    expect(screen.getByTestId("send-button").hasAttribute("disabled")).toBe(true);
    await user.keyboard("{Enter}");
    expect(server.sendCalls).toHaveLength(1);
  });
});

describe("ConnectionBanner", () => {
  it("appears while reconnecting, offers Retry now, and goes away once online", async () => {
    const server = createFakeServer();
    server.down = true;
    // A long, fixed wait so the banner stays in the reconnecting state until Retry now.
    const { store, session } = connect(
      server,
      "Ann",
      new Backoff({ baseMs: 60_000, maxMs: 60_000, random: () => 0.5 }),
    );
    render(
      <ChatProvider store={store} session={session}>
        <ConnectionBanner />
      </ChatProvider>,
    );
    const banner = await screen.findByTestId("connection-banner");
    await waitFor(() => {
      expect(screen.getByTestId("connection-banner").dataset.state).toBe("reconnecting");
    });
    expect(banner.textContent).toMatch(/Reconnecting in (29|30) s/);

    server.down = false;
    await userEvent.setup().click(screen.getByRole("button", { name: "Retry now" }));
    await waitFor(() => {
      expect(screen.queryByTestId("connection-banner")).toBeNull();
    });
    expect(store.getState().connection.kind).toBe("online");
  });
});
