/**
 * An in-memory FastChat server for tests, served through `createRouterTransport`: the client
 * code under test makes real ChatService/PresenceService calls with the real generated request
 * and response types. It follows the API's documented behaviour closely enough for the client:
 * Welcome first, a presence snapshot (everyone, with online_count), undelivered messages, echo
 * to the sender's sessions, DELIVERED/READ updates naming the newest message covered, idempotent
 * client_msg_id.
 */
import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import {
  Code,
  ConnectError,
  createRouterTransport,
  type HandlerContext,
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
  /** Registers a user directly (as if it had connected before); returns its token. */
  addUser(userId: string, displayName: string): string;
  /** Ends every open Subscribe stream normally (as a restart would). */
  endStreams(): void;
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
  /** Message ids some session of the recipient has received. */
  const delivered = new Set<string>();

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
  /** Marks messages to `userId` delivered and tells each sender, newest message covered. */
  const deliverPending = (userId: string, queue: EventQueue<ServerEvent>) => {
    for (const conv of conversations.values()) {
      const pending = conv.messages.filter(
        (m) => m.toUserId === userId && !delivered.has(m.messageId),
      );
      for (const m of pending) {
        queue.push(create(ServerEventSchema, { event: { case: "message", value: m } }));
        delivered.add(m.messageId);
      }
      const newest = pending[pending.length - 1];
      if (newest) {
        push(
          newest.fromUserId,
          create(ServerEventSchema, {
            event: {
              case: "status",
              value: {
                messageId: newest.messageId,
                peerUserId: userId,
                seq: newest.seq,
                status: MessageStatus.DELIVERED,
              },
            },
          }),
        );
      }
    }
  };

  const server: FakeServer = {
    users,
    sessions,
    sendCalls: [],
    calls,
    down: false,
    rateLimitedSends: 0,
    conversation,
    push,
    addUser(userId, displayName) {
      const token = `token-${userId}`;
      users.set(userId, { userId, displayName, token });
      return token;
    },
    endStreams() {
      for (const s of sessions) s.queue.close();
    },
    transport(getToken) {
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
              deliverPending(user.userId, session.queue);
              if (!wasOnline) broadcastPresence(user.userId);
              try {
                yield* session.queue.drain(ctx.signal);
              } finally {
                sessions.delete(session);
                if (!online(user.userId)) broadcastPresence(user.userId);
              }
            },

            sendMessage(req, ctx) {
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
              if (existing) {
                return {
                  clientMsgId: req.clientMsgId,
                  messageId: existing.messageId,
                  seq: existing.seq,
                  sentAt: existing.sentAt,
                  status: existing.status,
                };
              }
              const message = create(ChatMessageSchema, {
                messageId: newId("msg"),
                clientMsgId: req.clientMsgId,
                fromUserId: from.userId,
                toUserId: req.toUserId,
                text: req.text,
                seq: BigInt(conv.messages.length + 1),
                sentAt: timestampNow(),
                status: MessageStatus.SENT,
              });
              conv.messages.push(message);
              const event = create(ServerEventSchema, {
                event: { case: "message", value: message },
              });
              push(from.userId, event); // the sender's sessions see what it sent
              if (online(req.toUserId)) {
                push(req.toUserId, event);
                delivered.add(message.messageId);
                push(
                  from.userId,
                  create(ServerEventSchema, {
                    event: {
                      case: "status",
                      value: {
                        messageId: message.messageId,
                        peerUserId: req.toUserId,
                        seq: message.seq,
                        status: MessageStatus.DELIVERED,
                      },
                    },
                  }),
                );
              }
              return {
                clientMsgId: req.clientMsgId,
                messageId: message.messageId,
                seq: message.seq,
                sentAt: message.sentAt,
                status: MessageStatus.SENT,
              };
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
        { transport: { interceptors: [bearerAuth(getToken)] } },
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
