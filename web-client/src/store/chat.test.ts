import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import {
  ChatMessageSchema,
  ConversationSchema,
  GetHistoryResponseSchema,
  MessageStatus,
  SendMessageResponseSchema,
  ServerEventSchema,
  type ServerEvent,
} from "../gen/fastchat/v1/chat_pb";
import {
  PresenceEventSchema,
  PresenceSchema,
  PresenceStatus,
  type PresenceEvent,
} from "../gen/fastchat/v1/presence_pb";
import { memoryStorage } from "../test/fakeServer";
import {
  createChatStore,
  SELF_STORAGE_KEY,
  selectConversationList,
  selectOnlinePeople,
  selectOutboxMessages,
  selectTotalUnread,
  type ChatStore,
} from "./chat";

const ME = "user-me";
const BOB = "user-bob";
const CAROL = "user-carol";

function ev(event: MessageInitShape<typeof ServerEventSchema>["event"]): ServerEvent {
  return create(ServerEventSchema, { event });
}

function welcome(userId = ME, token = "tok-1", sessionId = "sess-1"): ServerEvent {
  return ev({
    case: "welcome",
    value: {
      sessionId,
      token,
      user: { userId, displayName: "Me" },
      serverTime: timestampFromMs(0),
    },
  });
}

function msg(
  from: string,
  to: string,
  seq: number,
  extra: { clientMsgId?: string; text?: string } = {},
) {
  return create(ChatMessageSchema, {
    messageId: `m-${from}-${seq}`,
    clientMsgId: extra.clientMsgId ?? `c-${from}-${seq}`,
    fromUserId: from,
    toUserId: to,
    text: extra.text ?? `text ${seq}`,
    seq: BigInt(seq),
    sentAt: timestampFromMs(1_000_000 + seq),
    status: MessageStatus.SENT,
  });
}

function status(peer: string, seq: number, s: MessageStatus): ServerEvent {
  return ev({
    case: "status",
    value: { messageId: `m-${ME}-${seq}`, peerUserId: peer, seq: BigInt(seq), status: s },
  });
}

function setup(storage = memoryStorage()) {
  let ids = 0;
  const store = createChatStore({
    storage,
    newId: () => `local-${++ids}`,
    defaultDisplayName: () => "SwiftPanda42",
    now: () => 5_000_000,
  });
  store.getState().applyServerEvent(welcome());
  return { store, storage };
}

/** Sends `n` own messages to `peer` and acks them with seq 1..n. */
function sendAndAck(store: ChatStore, peer: string, n: number): string[] {
  const ids: string[] = [];
  for (let i = 1; i <= n; i++) {
    const id = store.getState().queueMessage(peer, `hello ${i}`);
    ids.push(id);
    store.getState().applyAck(
      create(SendMessageResponseSchema, {
        clientMsgId: id,
        messageId: `m-${ME}-${i}`,
        seq: BigInt(i),
        sentAt: timestampFromMs(1_000_000 + i),
        status: MessageStatus.SENT,
      }),
    );
  }
  return ids;
}

const statuses = (store: ChatStore, peer: string) =>
  store.getState().conversations[peer]?.messages.map((m) => m.status);

describe("identity", () => {
  it("gets a name before the first Welcome and keeps the Welcome's identity in storage", () => {
    const storage = memoryStorage();
    const store = createChatStore({ storage, defaultDisplayName: () => "SwiftPanda42" });
    expect(store.getState().self).toEqual({
      userId: "",
      displayName: "SwiftPanda42",
      token: "",
      sessionId: "",
    });
    store.getState().applyServerEvent(welcome(ME, "secret", "s-9"));
    expect(store.getState().connection.kind).toBe("online");
    const saved = JSON.parse(storage.getItem(SELF_STORAGE_KEY) ?? "{}") as Record<string, string>;
    expect(saved).toMatchObject({
      userId: ME,
      token: "secret",
      sessionId: "s-9",
      displayName: "Me",
    });

    // A reload: a new store on the same storage is the same user.
    const again = createChatStore({ storage, defaultDisplayName: () => "Other" });
    expect(again.getState().self).toMatchObject({ userId: ME, token: "secret", displayName: "Me" });
  });

  it("renames, forgets refused credentials and survives garbage in storage", () => {
    const { store, storage } = setup();
    store.getState().setDisplayName("Alex");
    expect(store.getState().self.displayName).toBe("Alex");
    store.getState().forgetCredentials();
    expect(store.getState().self).toMatchObject({ userId: "", token: "", displayName: "Alex" });
    storage.setItem(SELF_STORAGE_KEY, "{not json");
    const fresh = createChatStore({ storage, defaultDisplayName: () => "Fresh" });
    expect(fresh.getState().self.displayName).toBe("Fresh");
  });
});

describe("message statuses", () => {
  it("goes SENDING → SENT → DELIVERED → READ", () => {
    const { store } = setup();
    const id = store.getState().queueMessage(BOB, "hi");
    expect(statuses(store, BOB)).toEqual(["sending"]);
    expect(store.getState().outbox).toEqual([id]);
    store.getState().applyServerEvent(
      ev({
        case: "ack",
        value: {
          clientMsgId: id,
          messageId: "m-1",
          seq: 1n,
          sentAt: timestampFromMs(1),
          status: MessageStatus.SENT,
        },
      }),
    );
    expect(statuses(store, BOB)).toEqual(["sent"]);
    expect(store.getState().outbox).toEqual([]);
    store.getState().applyServerEvent(status(BOB, 1, MessageStatus.DELIVERED));
    expect(statuses(store, BOB)).toEqual(["delivered"]);
    store.getState().applyServerEvent(status(BOB, 1, MessageStatus.READ));
    expect(statuses(store, BOB)).toEqual(["read"]);
  });

  it("applies an update to every own message up to its seq, and not to the peer's", () => {
    const { store } = setup();
    sendAndAck(store, BOB, 4);
    store.getState().applyMessage(msg(BOB, ME, 5));
    store.getState().applyServerEvent(status(BOB, 3, MessageStatus.DELIVERED));
    expect(statuses(store, BOB)).toEqual([
      "delivered",
      "delivered",
      "delivered",
      "sent",
      "received",
    ]);
    store.getState().applyServerEvent(status(BOB, 2, MessageStatus.READ));
    expect(statuses(store, BOB)).toEqual(["read", "read", "delivered", "sent", "received"]);
  });

  it("takes DELIVERED and READ out of order and never moves back", () => {
    const { store } = setup();
    sendAndAck(store, BOB, 3);
    store.getState().applyServerEvent(status(BOB, 3, MessageStatus.READ));
    expect(statuses(store, BOB)).toEqual(["read", "read", "read"]);
    // Late DELIVERED updates, and an older READ, change nothing.
    store.getState().applyServerEvent(status(BOB, 2, MessageStatus.DELIVERED));
    store.getState().applyServerEvent(status(BOB, 3, MessageStatus.DELIVERED));
    store.getState().applyServerEvent(status(BOB, 1, MessageStatus.READ));
    expect(statuses(store, BOB)).toEqual(["read", "read", "read"]);
    const conv = store.getState().conversations[BOB];
    expect(conv?.peerReadMark).toBe(3n);
    // A retried ack that reports SENT does not downgrade either.
    store.getState().applyAck({
      $typeName: "fastchat.v1.SendMessageResponse",
      clientMsgId: conv?.messages[0]?.clientMsgId ?? "",
      messageId: `m-${ME}-1`,
      seq: 1n,
      status: MessageStatus.SENT,
    });
    expect(statuses(store, BOB)).toEqual(["read", "read", "read"]);
  });

  it("a DELIVERED update for an older seq does not undo a newer one", () => {
    const { store } = setup();
    sendAndAck(store, BOB, 3);
    store.getState().applyServerEvent(status(BOB, 3, MessageStatus.DELIVERED));
    store.getState().applyServerEvent(status(BOB, 1, MessageStatus.DELIVERED));
    expect(statuses(store, BOB)).toEqual(["delivered", "delivered", "delivered"]);
    expect(store.getState().conversations[BOB]?.deliveredMark).toBe(3n);
  });

  it("a message's own server status counts (history of an already read message)", () => {
    const { store } = setup();
    const m = msg(ME, BOB, 1);
    m.status = MessageStatus.READ;
    store.getState().applyMessage(m);
    expect(statuses(store, BOB)).toEqual(["read"]);
  });

  it("fails on an error event for its client_msg_id, and a retry keeps the id", () => {
    const { store } = setup();
    const id = store.getState().queueMessage(BOB, "x".repeat(5000));
    store.getState().applyServerEvent(
      ev({
        case: "error",
        value: {
          code: "INVALID_ARGUMENT",
          message: "text is too long",
          clientMsgId: id,
          field: "send_message.text",
          retryAfterMs: 0,
        },
      }),
    );
    const failed = store.getState().conversations[BOB]?.messages[0];
    expect(failed?.status).toBe("failed");
    expect(failed?.error).toMatchObject({ code: "INVALID_ARGUMENT", field: "send_message.text" });
    expect(store.getState().outbox).toEqual([]);
    expect(store.getState().lastError).toBeNull();

    store.getState().retryMessage(id);
    expect(statuses(store, BOB)).toEqual(["sending"]);
    expect(store.getState().outbox).toEqual([id]);
    expect(selectOutboxMessages(store.getState()).map((m) => m.clientMsgId)).toEqual([id]);
  });

  it("an error without a message goes to lastError", () => {
    const { store } = setup();
    store.getState().applyServerEvent(
      ev({
        case: "error",
        value: {
          code: "RATE_LIMITED",
          message: "slow down",
          retryAfterMs: 3000,
          clientMsgId: "",
          field: "",
        },
      }),
    );
    expect(store.getState().lastError).toMatchObject({ code: "RATE_LIMITED", retryAfterMs: 3000 });
    store.getState().clearError();
    expect(store.getState().lastError).toBeNull();
  });

  it("removeFromOutbox takes a message off the outbox and leaves its status", () => {
    const { store } = setup();
    const id = store.getState().queueMessage(BOB, "hi");
    store.getState().removeFromOutbox(id);
    expect(store.getState().outbox).toEqual([]);
    expect(statuses(store, BOB)).toEqual(["sending"]);
  });
});

describe("de-duplication and order", () => {
  it("merges the ack and the echo of the same client_msg_id, in either order", () => {
    const { store } = setup();
    const a = store.getState().queueMessage(BOB, "first");
    const b = store.getState().queueMessage(BOB, "second");
    // Echo of b arrives before its ack; a's ack before its echo.
    store.getState().applyMessage(msg(ME, BOB, 2, { clientMsgId: b, text: "second" }));
    store.getState().applyAck({
      $typeName: "fastchat.v1.SendMessageResponse",
      clientMsgId: a,
      messageId: `m-${ME}-1`,
      seq: 1n,
      status: MessageStatus.SENT,
    });
    store.getState().applyMessage(msg(ME, BOB, 1, { clientMsgId: a, text: "first" }));
    store.getState().applyAck({
      $typeName: "fastchat.v1.SendMessageResponse",
      clientMsgId: b,
      messageId: `m-${ME}-2`,
      seq: 2n,
      status: MessageStatus.SENT,
    });
    const messages = store.getState().conversations[BOB]?.messages ?? [];
    expect(messages.map((m) => [m.key, m.seq, m.text, m.status])).toEqual([
      [a, 1n, "first", "sent"],
      [b, 2n, "second", "sent"],
    ]);
    expect(store.getState().outbox).toEqual([]);
  });

  it("keeps messages sorted by seq and unique by message_id across live events and history", () => {
    const { store } = setup();
    store.getState().applyMessage(msg(BOB, ME, 3));
    store.getState().applyMessage(msg(BOB, ME, 1));
    store.getState().applyMessage(msg(BOB, ME, 3));
    const pending = store.getState().queueMessage(BOB, "pending");
    store.getState().applyHistory(
      BOB,
      create(GetHistoryResponseSchema, {
        messages: [msg(BOB, ME, 1), msg(BOB, ME, 2), msg(BOB, ME, 3)],
        hasMore: false,
      }),
      false,
    );
    const messages = store.getState().conversations[BOB]?.messages ?? [];
    expect(messages.map((m) => m.seq)).toEqual([1n, 2n, 3n, null]);
    expect(messages.at(-1)?.clientMsgId).toBe(pending);
    expect(store.getState().conversations[BOB]?.hasMoreHistory).toBe(false);
  });

  it("drops a message whose seq the conversation already has: one bubble, read state kept", () => {
    const { store } = setup();
    for (const seq of [1, 2, 3]) store.getState().applyMessage(msg(BOB, ME, seq));
    expect(store.getState().markRead(BOB)).toBe(3n);
    // Sent again on the next session (the receipt did not reach the server before the drop).
    store.getState().applyServerEvent(ev({ case: "message", value: msg(BOB, ME, 2) }));
    store.getState().applyServerEvent(ev({ case: "message", value: msg(BOB, ME, 3) }));
    // A seq already here under another message id is the same message: the first copy stays.
    const again = msg(BOB, ME, 3, { text: "other copy" });
    again.messageId = "m-other";
    store.getState().applyMessage(again);
    const conv = store.getState().conversations[BOB];
    expect(conv?.messages.map((m) => [m.seq, m.messageId, m.text])).toEqual([
      [1n, `m-${BOB}-1`, "text 1"],
      [2n, `m-${BOB}-2`, "text 2"],
      [3n, `m-${BOB}-3`, "text 3"],
    ]);
    expect(conv?.unread).toBe(0);
    // Own messages too: an echo of an acknowledged message under its seq adds nothing.
    const [id] = sendAndAck(store, CAROL, 1);
    const echo = msg(ME, CAROL, 1, { clientMsgId: id ?? "", text: "hello 1" });
    echo.messageId = "m-echo";
    store.getState().applyMessage(echo);
    expect(store.getState().conversations[CAROL]?.messages.map((m) => m.key)).toEqual([id]);
  });

  it("history with an own message that is still queued takes it off the outbox", () => {
    const { store } = setup();
    const id = store.getState().queueMessage(BOB, "sent before the drop");
    store.getState().applyHistory(
      BOB,
      create(GetHistoryResponseSchema, {
        messages: [msg(ME, BOB, 1, { clientMsgId: id, text: "sent before the drop" })],
        peerReadUpToSeq: 1n,
      }),
      false,
    );
    expect(store.getState().outbox).toEqual([]);
    expect(statuses(store, BOB)).toEqual(["read"]);
  });
});

describe("read marks and unread counts", () => {
  it("counts peer messages above my read mark; markRead only moves forward", () => {
    const { store } = setup();
    for (const seq of [1, 2, 3, 4]) store.getState().applyMessage(msg(BOB, ME, seq));
    sendAndAck(store, CAROL, 1);
    store.getState().applyMessage(msg(CAROL, ME, 2));
    expect(store.getState().conversations[BOB]?.unread).toBe(4);
    expect(selectTotalUnread(store.getState())).toBe(5);

    expect(store.getState().markRead(BOB, 2n)).toBe(2n);
    expect(store.getState().conversations[BOB]?.unread).toBe(2);
    expect(store.getState().markRead(BOB, 1n)).toBeNull();
    expect(store.getState().conversations[BOB]?.readMark).toBe(2n);
    expect(store.getState().markRead(BOB)).toBe(4n);
    expect(store.getState().conversations[BOB]?.unread).toBe(0);
    expect(store.getState().markRead(BOB)).toBeNull();
    expect(store.getState().markRead("nobody")).toBeNull();

    store.getState().applyMessage(msg(BOB, ME, 5));
    expect(store.getState().conversations[BOB]?.unread).toBe(1);
    // Own messages never count as unread.
    expect(store.getState().conversations[CAROL]?.unread).toBe(1);
  });

  it("uses ListConversations' counts for messages not loaded, and its marks", () => {
    const { store } = setup();
    store.getState().applyConversations([
      create(ConversationSchema, {
        peer: { userId: BOB, displayName: "Bob" },
        lastMessage: msg(BOB, ME, 10),
        unreadCount: 3,
        readUpToSeq: 7n,
        peerReadUpToSeq: 0n,
        peerPresence: create(PresenceSchema, {
          user: { userId: BOB, displayName: "Bob" },
          status: PresenceStatus.AWAY,
        }),
      }),
    ]);
    const conv = store.getState().conversations[BOB];
    expect(conv?.unread).toBe(3);
    expect(conv?.readMark).toBe(7n);
    expect(store.getState().users[BOB]).toMatchObject({ displayName: "Bob", presence: "away" });
    // Loading those messages does not count them twice; a new one adds one.
    for (const seq of [8, 9, 10]) store.getState().applyMessage(msg(BOB, ME, seq));
    expect(store.getState().conversations[BOB]?.unread).toBe(3);
    store.getState().applyMessage(msg(BOB, ME, 11));
    expect(store.getState().conversations[BOB]?.unread).toBe(4);
    expect(store.getState().markRead(BOB)).toBe(11n);
    expect(store.getState().conversations[BOB]?.unread).toBe(0);
    // A stale list (read mark behind ours) does not move the mark back.
    store.getState().applyConversations([
      create(ConversationSchema, {
        peer: { userId: BOB, displayName: "Bob" },
        lastMessage: msg(BOB, ME, 11),
        unreadCount: 4,
        readUpToSeq: 7n,
      }),
    ]);
    expect(store.getState().conversations[BOB]?.readMark).toBe(11n);
    expect(store.getState().conversations[BOB]?.unread).toBe(0);
  });
});

describe("typing, presence and the other events", () => {
  it("tracks typing per peer and clears it when the peer's message arrives", () => {
    const { store } = setup();
    store
      .getState()
      .applyServerEvent(ev({ case: "typing", value: { fromUserId: BOB, isTyping: true } }));
    expect(store.getState().conversations[BOB]?.peerTyping).toBe(true);
    expect(store.getState().conversations[CAROL]?.peerTyping).toBeUndefined();
    store.getState().applyMessage(msg(BOB, ME, 1));
    expect(store.getState().conversations[BOB]?.peerTyping).toBe(false);
    store
      .getState()
      .applyTyping({ $typeName: "fastchat.v1.TypingEvent", fromUserId: BOB, isTyping: true });
    store
      .getState()
      .applyTyping({ $typeName: "fastchat.v1.TypingEvent", fromUserId: BOB, isTyping: false });
    expect(store.getState().conversations[BOB]?.peerTyping).toBe(false);
    store
      .getState()
      .applyTyping({ $typeName: "fastchat.v1.TypingEvent", fromUserId: BOB, isTyping: true });
    store.getState().applyServerEvent(welcome()); // a new session starts without stale typing
    expect(store.getState().conversations[BOB]?.peerTyping).toBe(false);
  });

  it("replaces presence from a snapshot and updates it from changes", () => {
    const { store } = setup();
    const presence = (userId: string, name: string, s: PresenceStatus, lastSeenMs?: number) =>
      create(PresenceSchema, {
        user: { userId, displayName: name },
        status: s,
        sessions: s === PresenceStatus.OFFLINE ? 0 : 1,
        ...(lastSeenMs === undefined ? {} : { lastSeen: timestampFromMs(lastSeenMs) }),
      });
    store.getState().applyServerEvent(
      ev({
        case: "presence",
        value: {
          event: {
            case: "snapshot",
            value: {
              users: [
                presence(BOB, "Bob", PresenceStatus.ONLINE),
                presence(CAROL, "Carol", PresenceStatus.AWAY),
              ],
            },
          },
        },
      }),
    );
    expect(store.getState().users[BOB]?.presence).toBe("online");
    expect(store.getState().users[CAROL]?.presence).toBe("away");
    store.getState().applyServerEvent(
      ev({
        case: "presence",
        value: {
          event: {
            case: "change",
            value: { presence: presence(BOB, "Bob", PresenceStatus.OFFLINE, 42_000) },
          },
        },
      }),
    );
    expect(store.getState().users[BOB]).toMatchObject({ presence: "offline", sessions: 0 });
    expect(store.getState().users[BOB]?.lastSeen?.getTime()).toBe(42_000);
    // A later snapshot without Carol: she is offline now.
    store
      .getState()
      .applyServerEvent(
        ev({ case: "presence", value: { event: { case: "snapshot", value: { users: [] } } } }),
      );
    expect(store.getState().users[CAROL]?.presence).toBe("offline");
  });

  it("leaves the state alone on pongs, heartbeats and unknown events", () => {
    const { store } = setup();
    const before = store.getState();
    store
      .getState()
      .applyServerEvent(
        ev({ case: "pong", value: { nonce: 7n, serverTime: timestampFromMs(5_000_100) } }),
      );
    store
      .getState()
      .applyServerEvent(
        ev({ case: "heartbeat", value: { serverTime: timestampFromMs(5_000_000) } }),
      );
    store.getState().applyServerEvent(ev({ case: undefined }));
    expect(store.getState()).toBe(before);
  });

  it("orders conversations by activity", () => {
    const { store } = setup();
    store.getState().applyMessage(msg(BOB, ME, 1));
    store.getState().applyMessage(msg(CAROL, ME, 2));
    expect(selectConversationList(store.getState()).map((c) => c.peerId)).toEqual([CAROL, BOB]);
  });
});

describe("presence beyond the directory page", () => {
  const DAVE = "user-dave";
  const ERIN = "user-erin";
  const FRANK = "user-frank";
  const online = (userId: string, status = PresenceStatus.ONLINE) =>
    create(PresenceSchema, { user: { userId, displayName: userId.slice(5) }, status, sessions: 1 });
  const snapshot = (onlineCount: number, ...userIds: string[]): PresenceEvent =>
    create(PresenceEventSchema, {
      event: { case: "snapshot", value: { users: userIds.map((id) => online(id)), onlineCount } },
    });
  const change = (userId: string, status: PresenceStatus): PresenceEvent =>
    create(PresenceEventSchema, {
      event: { case: "change", value: { presence: { ...online(userId, status), sessions: 0 } } },
    });
  const count = (users: number): PresenceEvent =>
    create(PresenceEventSchema, { event: { case: "onlineCount", value: { users } } });

  it("takes the server's total from the snapshot", () => {
    const { store } = setup();
    store
      .getState()
      .applyServerEvent(ev({ case: "presence", value: snapshot(2345, ME, BOB, CAROL) }));
    expect(store.getState().onlineCount).toBe(2345);
    // This user is left out of both, as in the people list.
    expect(selectOnlinePeople(store.getState())).toEqual({ listed: 2, total: 2344 });

    // A complete snapshot (and one from a server that sends no total) lists everyone.
    store.getState().applyPresenceEvent(snapshot(3, ME, BOB, CAROL));
    expect(selectOnlinePeople(store.getState())).toEqual({ listed: 2, total: 2 });
    store.getState().applyPresenceEvent(snapshot(0, ME, BOB));
    expect(store.getState().onlineCount).toBe(2);
    expect(selectOnlinePeople(store.getState())).toEqual({ listed: 1, total: 1 });
  });

  it("updates the total from OnlineCount events, then follows changes once everyone fits", () => {
    const { store } = setup();
    store.getState().applyPresenceEvent(snapshot(150, ME, BOB, CAROL));
    store.getState().applyServerEvent(ev({ case: "presence", value: count(2400) }));
    expect(store.getState().onlineCount).toBe(2400);
    // While only part is listed, a change does not move the total (it may be a page refill).
    store.getState().applyPresenceEvent(change(DAVE, PresenceStatus.ONLINE));
    expect(store.getState().users[DAVE]?.presence).toBe("online");
    expect(store.getState().onlineCount).toBe(2400);
    expect(selectOnlinePeople(store.getState())).toEqual({ listed: 3, total: 2399 });

    // Everyone fits again: the server says so once, and every change reaches this client after.
    store.getState().applyPresenceEvent(count(4));
    expect(selectOnlinePeople(store.getState())).toEqual({ listed: 3, total: 3 });
    store.getState().applyPresenceEvent(change(CAROL, PresenceStatus.OFFLINE));
    expect(store.getState().onlineCount).toBe(3);
    store.getState().applyPresenceEvent(change(ERIN, PresenceStatus.AWAY));
    expect(store.getState().onlineCount).toBe(4);
    expect(selectOnlinePeople(store.getState())).toEqual({ listed: 3, total: 3 });
  });

  it("a partial snapshot marks absent peers offline and shows no one else as offline", () => {
    const { store } = setup();
    store.getState().applyMessage(msg(BOB, ME, 1)); // a peer
    store.getState().applyMessage(msg(ERIN, ME, 1)); // a peer
    store.getState().setOpenPeer(DAVE); // a conversation the server does not know yet
    store.getState().applyPresenceEvent(snapshot(120, ME, BOB, CAROL, DAVE, ERIN));
    expect(selectOnlinePeople(store.getState())).toEqual({ listed: 4, total: 119 });

    // After a reconnect: Erin is listed, Frank is new on the page, the rest are absent.
    store.getState().applyPresenceEvent(snapshot(130, ME, ERIN, FRANK));
    const users = store.getState().users;
    // The server lists every online peer, so an absent peer is offline.
    expect(users[BOB]).toMatchObject({ presence: "offline", sessions: 0, displayName: "bob" });
    // Carol may be online outside the page: not shown offline, but forgotten.
    expect(users[CAROL]).toBeUndefined();
    // Dave's conversation needs his name: what we knew stays.
    expect(users[DAVE]?.presence).toBe("online");
    expect(users[ERIN]?.presence).toBe("online");
    expect(users[FRANK]?.presence).toBe("online");
    expect(store.getState().onlineCount).toBe(130);
    expect(selectOnlinePeople(store.getState())).toEqual({ listed: 3, total: 129 });

    // A change for someone unknown (a page vacancy filled) adds them.
    store.getState().applyPresenceEvent(change(CAROL, PresenceStatus.AWAY));
    expect(store.getState().users[CAROL]).toMatchObject({ presence: "away", displayName: "carol" });
  });
});
