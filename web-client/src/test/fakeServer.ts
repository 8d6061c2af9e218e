/**
 * An in-memory FastChat server for tests, served through `createRouterTransport`: the client
 * code under test makes real ChatService/PresenceService calls with the real generated request
 * and response types. It follows the API's documented behaviour closely enough for the client:
 * Welcome first, a presence snapshot (everyone, with online_count), undelivered messages, echo
 * to the sender's sessions, DELIVERED/READ updates naming the newest message covered, idempotent
 * client_msg_id, one seq counter for all messages (so a session gets its messages in increasing
 * seq). Delivery receipts too: a session whose Hello sets `receipts` gets a receive window; a
 * message to it counts as delivered only once Acknowledge covers it, at most the window go
 * unacknowledged (the rest wait for a receipt), and what the session did not get acknowledged is
 * sent again on the user's next session.
 */
import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import {
  Code,
  ConnectError,
  createRouterTransport,
  type HandlerContext,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import {
  ChatMessageSchema,
  ChatService,
  ConversationSchema,
  MessageStatus,
  ServerEventSchema,
  type ChatMessage,
  type ServerEvent,
} from "../gen/fastchat/v1/chat_pb";
import { PresenceSchema, PresenceService, PresenceStatus } from "../gen/fastchat/v1/presence_pb";
import { bearerAuth } from "../api/transport";

/** A queue that an async iterator drains; closing it ends the iteration. */
class EventQueue<T> {
  private items: T[] = [];
  private waiting: ((v: IteratorResult<T>) => void) | null = null;
  closed = false;

  push(item: T): void {
    if (this.closed) return;
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = null;
      w({ value: item, done: false });
    } else {
      this.items.push(item);
    }
  }

  close(): void {
    this.closed = true;
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = null;
      w({ value: undefined, done: true });
    }
  }

  async *drain(signal: AbortSignal): AsyncGenerator<T> {
    const onAbort = () => {
      this.close();
    };
    signal.addEventListener("abort", onAbort);
    try {
      for (;;) {
        const item = this.items.shift();
        if (item !== undefined) {
          yield item;
          continue;
        }
        if (this.closed) return;
        const next = await new Promise<IteratorResult<T>>((resolve) => {
          this.waiting = resolve;
        });
        if (next.done) return;
        yield next.value;
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  }
}

interface FakeUser {
  userId: string;
  displayName: string;
  token: string;
}

interface FakeSession {
  sessionId: string;
  userId: string;
  queue: EventQueue<ServerEvent>;
  /** Whether its Hello asked for receipts. */
  receipts: boolean;
  /** Messages to the user it sent and the client has not acknowledged, in order. */
  unacked: ChatMessage[];
  /** Messages waiting for room in the receive window. */
  held: ChatMessage[];
}

/** How the next SendMessage call goes wrong (see FakeServer.sendFaults). */
export interface SendFault {
  /**
   * A status the call fails with; "hang": no answer until the client gives up (its deadline);
   * "network": the request never reaches the server (fetch rejects, as when offline).
   */
  failure: Code | "hang" | "network";
  /**
   * The message is stored and reaches its recipient before the failure: only the answer is lost,
   * so a retry must return it. The sender's sessions get no echo of it (as if their stream were
   * behind), so only the retry's answer can show it stored.
   */
  stored: boolean;
}

interface ConversationData {
  messages: ChatMessage[];
  /** Read marks by reader. */
  readMarks: Map<string, bigint>;
}

export interface FakeServer {
  transport(getToken: () => string | null | undefined): Transport;
  users: Map<string, FakeUser>;
  sessions: Set<FakeSession>;
  /** Every SendMessage request received, in order (including refused ones). */
  sendCalls: { clientMsgId: string; toUserId: string; text: string; authorized: boolean }[];
  /** How many times each RPC was called. */
  calls: Map<string, number>;
  /** While true every call fails with UNAVAILABLE, as when the server is down. */
  down: boolean;
  /** While above 0, each SendMessage is refused as rate limited (RESOURCE_EXHAUSTED), counting down. */
  rateLimitedSends: number;
  /** Failures for the next SendMessage calls, first first (each used once). */
  sendFaults: SendFault[];
  /** Welcome.receive_window for sessions that ask for receipts. */
  receiveWindow: number;
  /** False: Acknowledge answers UNIMPLEMENTED and no session gets receipts (an older server). */
  receiptsSupported: boolean;
  /** Every Acknowledge request received, in order (including refused ones). */
  ackCalls: { sessionId: string; upToSeq: bigint; authorized: boolean }[];
  /** While above 0, each Acknowledge fails with UNAVAILABLE, counting down. */
  failedAcks: number;
  /** Every message sent to a recipient's session, in order (a message sent again appears again). */
  deliveries: { sessionId: string; messageId: string; seq: bigint }[];
  /** Stores a message from one user to another and sends it on, as SendMessage does. */
  storeMessage(fromUserId: string, toUserId: string, text: string): ChatMessage;
  /** Registers a user directly (as if it had connected before); returns its token. */
  addUser(userId: string, displayName: string): string;
  /** Ends every open Subscribe stream normally (as a restart would), or only those of one user. */
  endStreams(userId?: string): void;
  /** Pushes an event to every session of a user. */
  push(userId: string, event: ServerEvent): void;
  conversation(a: string, b: string): ConversationData;
}

function convKey(a: string, b: string): string {
  return a < b ? `${a}|${b}` : `${b}|${a}`;
}

export function createFakeServer(): FakeServer {
  let nextId = 1;
  const newId = (prefix: string) => `${prefix}-${nextId++}`;
  const users = new Map<string, FakeUser>();
  const sessions = new Set<FakeSession>();
  const conversations = new Map<string, ConversationData>();
  const calls = new Map<string, number>();
  /** Message ids some session of the recipient has received (acknowledged, with receipts). */
  const delivered = new Set<string>();
  let lastSeq = 0n;

  const count = (name: string) => {
    calls.set(name, (calls.get(name) ?? 0) + 1);
  };
  const checkUp = () => {
    if (server.down) throw new ConnectError("server is down", Code.Unavailable);
  };
  const conversation = (a: string, b: string): ConversationData => {
    const key = convKey(a, b);
    let c = conversations.get(key);
    if (!c) {
      c = { messages: [], readMarks: new Map() };
      conversations.set(key, c);
    }
    return c;
  };
  const push = (userId: string, event: ServerEvent) => {
    for (const s of sessions) if (s.userId === userId) s.queue.push(event);
  };
  const online = (userId: string) => [...sessions].some((s) => s.userId === userId);
  const presenceOf = (userId: string) => {
    const u = users.get(userId);
    const n = [...sessions].filter((s) => s.userId === userId).length;
    return create(PresenceSchema, {
      user: { userId, displayName: u?.displayName ?? "" },
      status: n > 0 ? PresenceStatus.ONLINE : PresenceStatus.OFFLINE,
      lastSeen: timestampNow(),
      sessions: n,
    });
  };
  const broadcastPresence = (userId: string) => {
    const event = create(ServerEventSchema, {
      event: {
        case: "presence",
        value: { event: { case: "change", value: { presence: presenceOf(userId) } } },
      },
    });
    for (const s of sessions) s.queue.push(event);
  };
  const authUser = (ctx: HandlerContext, token = ""): FakeUser => {
    const header = ctx.requestHeader.get("authorization") ?? "";
    const t = token || header.replace(/^Bearer /, "");
    const user = [...users.values()].find((u) => u.token === t && t !== "");
    if (!user) throw new ConnectError("missing or unknown token", Code.Unauthenticated);
    return user;
  };
  /** Marks messages delivered and tells each sender, once per conversation, the newest covered. */
  const markDelivered = (messages: readonly ChatMessage[]) => {
    const newest = new Map<string, ChatMessage>();
    for (const m of messages) {
      if (delivered.has(m.messageId)) continue;
      delivered.add(m.messageId);
      const key = convKey(m.fromUserId, m.toUserId);
      const previous = newest.get(key);
      if (!previous || m.seq > previous.seq) newest.set(key, m);
    }
    for (const m of newest.values()) {
      push(
        m.fromUserId,
        create(ServerEventSchema, {
          event: {
            case: "status",
            value: {
              messageId: m.messageId,
              peerUserId: m.toUserId,
              seq: m.seq,
              status: MessageStatus.DELIVERED,
            },
          },
        }),
      );
    }
  };
  /**
   * Sends a message to a session of its recipient. Without receipts it counts as delivered now
   * (added to `deliveredNow`); with receipts it waits for the session's Acknowledge, or for room
   * in the window.
   */
  const sendTo = (session: FakeSession, m: ChatMessage, deliveredNow: ChatMessage[]) => {
    if (session.receipts && session.unacked.length >= server.receiveWindow) {
      session.held.push(m);
      return;
    }
    session.queue.push(create(ServerEventSchema, { event: { case: "message", value: m } }));
    server.deliveries.push({ sessionId: session.sessionId, messageId: m.messageId, seq: m.seq });
    if (session.receipts) session.unacked.push(m);
    else deliveredNow.push(m);
  };
  /** Sends a new session every message to its user that no session has delivered, by seq. */
  const deliverPending = (session: FakeSession) => {
    const pending = [...conversations.values()]
      .flatMap((c) => c.messages)
      .filter((m) => m.toUserId === session.userId && !delivered.has(m.messageId))
      .sort((a, b) => (a.seq < b.seq ? -1 : 1));
    const deliveredNow: ChatMessage[] = [];
    for (const m of pending) sendTo(session, m, deliveredNow);
    markDelivered(deliveredNow);
  };
  /** Where a stored message stands now, as a retried send reports it. */
  const statusOf = (m: ChatMessage): MessageStatus => {
    const readMark = conversation(m.fromUserId, m.toUserId).readMarks.get(m.toUserId) ?? 0n;
    if (m.seq <= readMark) return MessageStatus.READ;
    return delivered.has(m.messageId) ? MessageStatus.DELIVERED : MessageStatus.SENT;
  };
  /** Stores a message and sends it to the recipient's sessions (and, unless told not to, the sender's). */
  const storeAndFanOut = (
    from: string,
    to: string,
    clientMsgId: string,
    text: string,
    echo: boolean,
  ): ChatMessage => {
    lastSeq += 1n;
    const message = create(ChatMessageSchema, {
      messageId: newId("msg"),
      clientMsgId,
      fromUserId: from,
      toUserId: to,
      text,
      seq: lastSeq,
      sentAt: timestampNow(),
      status: MessageStatus.SENT,
    });
    conversation(from, to).messages.push(message);
    if (echo) {
      // The sender's sessions see what it sent.
      push(from, create(ServerEventSchema, { event: { case: "message", value: message } }));
    }
    const deliveredNow: ChatMessage[] = [];
    for (const session of sessions)
      if (session.userId === to) sendTo(session, message, deliveredNow);
    markDelivered(deliveredNow);
    return message;
  };

  const server: FakeServer = {
    users,
    sessions,
    sendCalls: [],
    calls,
    down: false,
    rateLimitedSends: 0,
    sendFaults: [],
    receiveWindow: 8,
    receiptsSupported: true,
    ackCalls: [],
    failedAcks: 0,
    deliveries: [],
    storeMessage(fromUserId, toUserId, text) {
      return storeAndFanOut(fromUserId, toUserId, newId("client"), text, true);
    },
    conversation,
    push,
    addUser(userId, displayName) {
      const token = `token-${userId}`;
      users.set(userId, { userId, displayName, token });
      return token;
    },
    endStreams(userId) {
      for (const s of sessions) if (userId === undefined || s.userId === userId) s.queue.close();
    },
    transport(getToken) {
      /** A "network" send fault: the request fails in the client, as fetch does offline. */
      const networkFaults: Interceptor = (next) => (req) => {
        if (req.method.name === "SendMessage" && server.sendFaults[0]?.failure === "network") {
          server.sendFaults.shift();
          return Promise.reject(new TypeError("Failed to fetch"));
        }
        return next(req);
      };
      return createRouterTransport(
        ({ service }) => {
          service(ChatService, {
            async *subscribe(req, ctx) {
              count("subscribe");
              checkUp();
              const hello = req.hello;
              let user: FakeUser;
              if (hello?.userId && users.has(hello.userId)) {
                user = authUser(ctx, hello.token);
                if (user.userId !== hello.userId) {
                  throw new ConnectError("token is for another user", Code.PermissionDenied);
                }
              } else {
                if (!hello?.displayName) {
                  throw new ConnectError("display_name is required", Code.InvalidArgument);
                }
                const userId = hello.userId || newId("user");
                user = { userId, displayName: hello.displayName, token: newId("token") };
                users.set(userId, user);
              }
              if (hello.displayName) user.displayName = hello.displayName;
              const session: FakeSession = {
                sessionId: newId("session"),
                userId: user.userId,
                queue: new EventQueue<ServerEvent>(),
                receipts: hello.receipts && server.receiptsSupported,
                unacked: [],
                held: [],
              };
              const wasOnline = online(user.userId);
              sessions.add(session);
              session.queue.push(
                create(ServerEventSchema, {
                  event: {
                    case: "welcome",
                    value: {
                      sessionId: session.sessionId,
                      user: { userId: user.userId, displayName: user.displayName },
                      token: user.token,
                      serverTime: timestampNow(),
                      receiveWindow: session.receipts ? server.receiveWindow : 0,
                    },
                  },
                }),
              );
              const everyoneOnline = [...users.keys()].filter(online).map(presenceOf);
              session.queue.push(
                create(ServerEventSchema, {
                  event: {
                    case: "presence",
                    value: {
                      event: {
                        case: "snapshot",
                        // Everyone: this server has no directory page to scope it to.
                        value: { users: everyoneOnline, onlineCount: everyoneOnline.length },
                      },
                    },
                  },
                }),
              );
              deliverPending(session);
              if (!wasOnline) broadcastPresence(user.userId);
              try {
                yield* session.queue.drain(ctx.signal);
              } finally {
                sessions.delete(session);
                if (!online(user.userId)) broadcastPresence(user.userId);
              }
            },

            async sendMessage(req, ctx) {
              count("sendMessage");
              const header = ctx.requestHeader.get("authorization") ?? "";
              server.sendCalls.push({
                clientMsgId: req.clientMsgId,
                toUserId: req.toUserId,
                text: req.text,
                authorized: header.startsWith("Bearer "),
              });
              checkUp();
              const from = authUser(ctx);
              if (server.rateLimitedSends > 0) {
                server.rateLimitedSends -= 1;
                throw new ConnectError(
                  "rate limited: too many message actions",
                  Code.ResourceExhausted,
                );
              }
              if (!req.text.trim()) {
                throw new ConnectError("send_message.text: empty", Code.InvalidArgument);
              }
              if (!users.has(req.toUserId) || req.toUserId === from.userId) {
                throw new ConnectError("unknown user", Code.NotFound);
              }
              const conv = conversation(from.userId, req.toUserId);
              const existing = conv.messages.find(
                (m) => m.fromUserId === from.userId && m.clientMsgId === req.clientMsgId,
              );
              const fault = server.sendFaults.shift();
              if (fault) {
                if (!existing && fault.stored) {
                  storeAndFanOut(from.userId, req.toUserId, req.clientMsgId, req.text, false);
                }
                if (fault.failure === "hang") {
                  // No answer: the client's deadline ends the call (or, at the latest, 5 s).
                  await new Promise((resolve) => {
                    ctx.signal.addEventListener("abort", resolve);
                    setTimeout(resolve, 5_000);
                  });
                  throw new ConnectError("no answer in time", Code.DeadlineExceeded);
                }
                throw new ConnectError("the answer was lost", fault.failure as Code);
              }
              const message =
                existing ??
                storeAndFanOut(from.userId, req.toUserId, req.clientMsgId, req.text, true);
              return {
                clientMsgId: req.clientMsgId,
                messageId: message.messageId,
                seq: message.seq,
                sentAt: message.sentAt,
                // SENT for a new message; a retry returns the message's current status.
                status: existing ? statusOf(existing) : MessageStatus.SENT,
              };
            },

            acknowledge(req, ctx) {
              count("acknowledge");
              const header = ctx.requestHeader.get("authorization") ?? "";
              server.ackCalls.push({
                sessionId: req.sessionId,
                upToSeq: req.upToSeq,
                authorized: header.startsWith("Bearer "),
              });
              checkUp();
              if (!server.receiptsSupported) {
                throw new ConnectError("receipts are not implemented yet", Code.Unimplemented);
              }
              if (server.failedAcks > 0) {
                server.failedAcks -= 1;
                throw new ConnectError("the receipt was lost", Code.Unavailable);
              }
              const me = authUser(ctx);
              const session = [...sessions].find(
                (s) => s.sessionId === req.sessionId && s.userId === me.userId,
              );
              if (!session) {
                throw new ConnectError("session_id: no open session of this user", Code.NotFound);
              }
              if (!session.receipts) {
                throw new ConnectError("session_id: no receipts", Code.FailedPrecondition);
              }
              const covered = session.unacked.filter((m) => m.seq <= req.upToSeq);
              session.unacked = session.unacked.filter((m) => m.seq > req.upToSeq);
              markDelivered(covered);
              // Room in the window again: what waited goes out, as far as it fits.
              const held = session.held.splice(0);
              for (const m of held) sendTo(session, m, []);
              return {};
            },

            setTyping(req, ctx) {
              count("setTyping");
              checkUp();
              const from = authUser(ctx);
              push(
                req.toUserId,
                create(ServerEventSchema, {
                  event: {
                    case: "typing",
                    value: { fromUserId: from.userId, isTyping: req.isTyping },
                  },
                }),
              );
              return {};
            },

            markRead(req, ctx) {
              count("markRead");
              checkUp();
              const me = authUser(ctx);
              const conv = conversation(me.userId, req.peerUserId);
              const before = conv.readMarks.get(me.userId) ?? 0n;
              const mark = req.upToSeq > before ? req.upToSeq : before;
              conv.readMarks.set(me.userId, mark);
              if (mark > before) {
                const newest = [...conv.messages]
                  .reverse()
                  .find((m) => m.fromUserId === req.peerUserId && m.seq <= mark);
                push(
                  req.peerUserId,
                  create(ServerEventSchema, {
                    event: {
                      case: "status",
                      value: {
                        messageId: newest?.messageId ?? "",
                        peerUserId: me.userId,
                        seq: mark,
                        status: MessageStatus.READ,
                      },
                    },
                  }),
                );
              }
              return { readUpToSeq: mark };
            },

            getHistory(req, ctx) {
              count("getHistory");
              checkUp();
              const me = authUser(ctx);
              const conv = conversation(me.userId, req.peerUserId);
              const limit = req.limit || 50;
              const older = conv.messages.filter(
                (m) => req.beforeSeq === 0n || m.seq < req.beforeSeq,
              );
              const page = older.slice(-limit);
              return {
                messages: page,
                hasMore: older.length > page.length,
                peerReadUpToSeq: conv.readMarks.get(req.peerUserId) ?? 0n,
              };
            },

            listConversations(_req, ctx) {
              count("listConversations");
              checkUp();
              const me = authUser(ctx);
              const result = [];
              for (const conv of conversations.values()) {
                const last = conv.messages[conv.messages.length - 1];
                if (!last) continue;
                const peerId = last.fromUserId === me.userId ? last.toUserId : last.fromUserId;
                if (last.fromUserId !== me.userId && last.toUserId !== me.userId) continue;
                const readMark = conv.readMarks.get(me.userId) ?? 0n;
                result.push(
                  create(ConversationSchema, {
                    peer: { userId: peerId, displayName: users.get(peerId)?.displayName ?? "" },
                    lastMessage: last,
                    unreadCount: conv.messages.filter(
                      (m) => m.fromUserId === peerId && m.seq > readMark,
                    ).length,
                    readUpToSeq: readMark,
                    peerReadUpToSeq: conv.readMarks.get(peerId) ?? 0n,
                    peerPresence: presenceOf(peerId),
                  }),
                );
              }
              return { conversations: result };
            },
          });
          service(PresenceService, {
            setStatus(req, ctx) {
              count("setStatus");
              checkUp();
              const me = authUser(ctx);
              return { presence: { ...presenceOf(me.userId), status: req.status } };
            },
          });
        },
        { transport: { interceptors: [bearerAuth(getToken), networkFaults] } },
      );
    },
  };
  return server;
}

/** Polls `check` until it returns true (or throws after `timeoutMs`). */
export async function waitFor(check: () => boolean, timeoutMs = 2000, what = "condition") {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** A Map-backed stand-in for sessionStorage. */
export function memoryStorage(): Storage {
  const data = new Map<string, string>();
  return {
    get length() {
      return data.size;
    },
    clear: () => {
      data.clear();
    },
    getItem: (k) => data.get(k) ?? null,
    key: (i) => [...data.keys()][i] ?? null,
    removeItem: (k) => {
      data.delete(k);
    },
    setItem: (k, v) => {
      data.set(k, v);
    },
  };
}
