/**
 * The client's state: who I am, who is around, conversations, message statuses, unread counts,
 * typing, the connection, and the outgoing queue. A vanilla Zustand store (React binds it with
 * `useStore(store, selector)`), driven by `applyServerEvent` for everything the Subscribe stream
 * brings and by the few actions below for what the person does. It never talks to the network:
 * `api/session.ts` does, and calls these actions.
 */
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { createStore, type StoreApi } from "zustand/vanilla";
import { v7 as uuidv7 } from "uuid";
import {
  MessageStatus,
  type ChatMessage,
  type Conversation,
  type ErrorEvent,
  type GetHistoryResponse,
  type SendMessageResponse,
  type ServerEvent,
  type StatusUpdate,
  type TypingEvent,
} from "../gen/fastchat/v1/chat_pb";
import { PresenceStatus, type Presence, type PresenceEvent } from "../gen/fastchat/v1/presence_pb";

// ---------------------------------------------------------------------------------------------
// State shape

/** Who this tab is. Persisted to sessionStorage so a reload is the same user. */
export interface SelfIdentity {
  /** Empty until the first Welcome: the server picks the id. */
  userId: string;
  displayName: string;
  /** Bearer token from Welcome; empty until the first Welcome. */
  token: string;
  /** This tab's current session (Welcome.session_id); empty while not connected. */
  sessionId: string;
}

export type PresenceKind = "online" | "away" | "offline";

export interface UserInfo {
  userId: string;
  displayName: string;
  presence: PresenceKind;
  /** Set when offline (last connection), otherwise the latest activity; null when unknown. */
  lastSeen: Date | null;
  sessions: number;
}

/** Own messages go SENDING → SENT → DELIVERED → READ (or FAILED); a peer's are "received". */
export type OwnStatus = "sending" | "sent" | "delivered" | "read" | "failed";
export type MessageState = OwnStatus | "received";

/** A refusal, as the server said it (turn it into words with lib/errors.ts). */
export interface ApiError {
  code: string;
  message: string;
  retryAfterMs: number;
  field: string;
}

export interface UiMessage {
  /** Stable key for rendering: the client_msg_id of own messages, otherwise the message id. */
  key: string;
  /** Server id; empty while the message is still being sent. */
  messageId: string;
  clientMsgId: string;
  fromUserId: string;
  toUserId: string;
  text: string;
  /** Null while not yet acknowledged. */
  seq: bigint | null;
  /** Server time once acknowledged, otherwise the local time it was written. */
  sentAt: Date;
  own: boolean;
  status: MessageState;
  /** The highest status the server reported for this message itself (own messages). */
  serverStatus: MessageStatus;
  /** Why it failed (status "failed"). */
  error: ApiError | null;
}

export interface ConversationState {
  peerId: string;
  /** Acknowledged messages by ascending seq, then own pending ones in the order written. */
  messages: UiMessage[];
  /** My read mark: every peer message with seq <= readMark is read. Only moves forward. */
  readMark: bigint;
  /** Highest seq of my messages the peer received (DELIVERED). Only moves forward. */
  deliveredMark: bigint;
  /** The peer's read mark on my messages (READ). Only moves forward. */
  peerReadMark: bigint;
  /** Unread count the server gave (ListConversations) for messages up to `serverUnreadUpTo`. */
  serverUnread: number;
  serverUnreadUpTo: bigint;
  /** Messages from the peer with seq > readMark (derived; kept up to date by every action). */
  unread: number;
  /** Whether GetHistory said older messages exist (null: never asked). */
  hasMoreHistory: boolean | null;
  peerTyping: boolean;
  /** Newest activity (ms since epoch), for ordering the conversation list. */
  lastActivity: number;
}

export type ConnectionState =
  | { kind: "idle" }
  | { kind: "connecting"; attempt: number }
  | { kind: "online"; since: number }
  | { kind: "reconnecting"; attempt: number; retryAt: number; reason: string };

export interface ChatState {
  self: SelfIdentity;
  users: Record<string, UserInfo>;
  /**
   * Users ONLINE or AWAY on the whole server, this user included. Larger than the online users in
   * `users` when the server tells this client only about some of them (the directory page, the
   * conversation peers and the user): then it comes from the snapshot and OnlineCount events.
   */
  onlineCount: number;
  conversations: Record<string, ConversationState>;
  /** client_msg_ids waiting to be sent, oldest first (written while offline, or in flight). */
  outbox: string[];
  /** The conversation on screen (its history is refreshed after a reconnect). */
  openPeerId: string | null;
  connection: ConnectionState;
  /** The latest refusal not tied to a message, for a banner; cleared by clearError(). */
  lastError: ApiError | null;
}

export interface ChatActions {
  /** Every ServerEvent kind of the Subscribe (or Chat) stream. */
  applyServerEvent(event: ServerEvent): void;
  applyPresenceEvent(event: PresenceEvent): void;
  applyMessage(message: ChatMessage): void;
  applyAck(ack: SendMessageResponse): void;
  applyStatus(update: StatusUpdate): void;
  applyTyping(event: TypingEvent): void;
  applyError(error: ErrorEvent): void;
  /** A page of GetHistory for a peer. `older` when it was a page before the loaded ones. */
  applyHistory(peerId: string, page: GetHistoryResponse, older: boolean): void;
  applyConversations(conversations: readonly Conversation[]): void;
  /** Writes a message: shown as SENDING and queued for sending. Returns its client_msg_id. */
  queueMessage(peerId: string, text: string): string;
  /** Re-queues a FAILED message with its original client_msg_id. */
  retryMessage(clientMsgId: string): void;
  /** Marks a message FAILED (refused by the server) and takes it off the outbox. */
  markFailed(clientMsgId: string, error: ApiError): void;
  /** Takes a message off the outbox, status unchanged (for an id the store has no message for). */
  removeFromOutbox(clientMsgId: string): void;
  /**
   * Moves my read mark for a peer forward (default: up to the newest loaded peer message).
   * Returns the new mark when it moved (then tell the server), or null.
   */
  markRead(peerId: string, upToSeq?: bigint): bigint | null;
  setOpenPeer(peerId: string | null): void;
  setConnection(connection: ConnectionState): void;
  setDisplayName(name: string): void;
  /** Forgets the user id and token (the server refused them); the name stays. */
  forgetCredentials(): void;
  /** Shows a refusal not tied to a message (sets `lastError`). */
  setError(error: ApiError): void;
  clearError(): void;
}

export type ChatStore = StoreApi<ChatState & ChatActions>;

// ---------------------------------------------------------------------------------------------
// Construction

export const SELF_STORAGE_KEY = "fastchat.self";

/** The part of sessionStorage the store uses. */
export type KeyValueStorage = Pick<Storage, "getItem" | "setItem">;

export interface ChatStoreOptions {
  /** Where the identity persists (window.sessionStorage in the app). */
  storage?: KeyValueStorage;
  /** Name for a brand-new identity. */
  defaultDisplayName?: () => string;
  /** New client_msg_ids (default UUIDv7: time-ordered, so the server's key index appends). */
  newId?: () => string;
  /** Clock in ms (default Date.now). */
  now?: () => number;
}

function loadSelf(storage: KeyValueStorage | undefined, defaultName: () => string): SelfIdentity {
  const fresh: SelfIdentity = { userId: "", displayName: "", token: "", sessionId: "" };
  try {
    const raw = storage?.getItem(SELF_STORAGE_KEY);
    if (raw) {
      const parsed = JSON.parse(raw) as Partial<Record<keyof SelfIdentity, unknown>>;
      for (const key of Object.keys(fresh) as (keyof SelfIdentity)[]) {
        const value = parsed[key];
        if (typeof value === "string") fresh[key] = value;
      }
    }
  } catch {
    // Unreadable storage or JSON: start as a new user.
  }
  if (!fresh.displayName) fresh.displayName = defaultName();
  return fresh;
}

function saveSelf(storage: KeyValueStorage | undefined, self: SelfIdentity): void {
  try {
    storage?.setItem(SELF_STORAGE_KEY, JSON.stringify(self));
  } catch {
    // Storage full or blocked: the identity lasts for this page only.
  }
}

export function emptyConversation(peerId: string): ConversationState {
  return {
    peerId,
    messages: [],
    readMark: 0n,
    deliveredMark: 0n,
    peerReadMark: 0n,
    serverUnread: 0,
    serverUnreadUpTo: 0n,
    unread: 0,
    hasMoreHistory: null,
    peerTyping: false,
    lastActivity: 0,
  };
}

// ---------------------------------------------------------------------------------------------
// Pure helpers (exported for tests and selectors)

const STATUS_RANK: Record<OwnStatus, number> = {
  failed: -1,
  sending: 0,
  sent: 1,
  delivered: 2,
  read: 3,
};

function maxBig(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}

function tsDate(ts: Timestamp | undefined, fallback: number): Date {
  return ts ? timestampDate(ts) : new Date(fallback);
}

function presenceKind(status: PresenceStatus): PresenceKind {
  switch (status) {
    case PresenceStatus.ONLINE:
      return "online";
    case PresenceStatus.AWAY:
      return "away";
    default:
      return "offline";
  }
}

/** The status an own message shows, from its own server status and the conversation's marks. */
export function ownStatus(message: UiMessage, conv: ConversationState): MessageState {
  if (!message.own) return "received";
  if (message.status === "failed" && message.seq === null) return "failed";
  if (message.seq === null) return "sending";
  let status: OwnStatus = "sent";
  if (message.serverStatus === MessageStatus.DELIVERED) status = "delivered";
  if (message.serverStatus === MessageStatus.READ) status = "read";
  if (message.seq <= conv.deliveredMark && STATUS_RANK[status] < STATUS_RANK.delivered) {
    status = "delivered";
  }
  if (message.seq <= conv.peerReadMark) status = "read";
  return status;
}

/** Messages from the peer with seq above my read mark, counting what the server told of. */
export function unreadCount(conv: ConversationState): number {
  const peerSeqs = conv.messages
    .filter((m) => !m.own && m.seq !== null && m.seq > conv.readMark)
    .map((m) => m.seq as bigint);
  const upTo = conv.serverUnreadUpTo;
  const loadedUpTo = peerSeqs.filter((s) => s <= upTo).length;
  const loadedAfter = peerSeqs.filter((s) => s > upTo).length;
  const server = conv.readMark < upTo ? conv.serverUnread : 0;
  return Math.max(server, loadedUpTo) + loadedAfter;
}

function compareMessages(a: UiMessage, b: UiMessage): number {
  if (a.seq !== null && b.seq !== null) return a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0;
  if (a.seq !== null) return -1;
  if (b.seq !== null) return 1;
  return 0; // both pending: stable sort keeps the order written
}

/** Recomputes the derived fields (order, statuses, unread, activity) of a conversation. */
function finish(conv: ConversationState): ConversationState {
  const messages = [...conv.messages].sort(compareMessages).map((m) => {
    const status = ownStatus(m, conv);
    return status === m.status ? m : { ...m, status };
  });
  const last = messages[messages.length - 1];
  const lastActivity = Math.max(conv.lastActivity, last ? last.sentAt.getTime() : 0);
  const next = { ...conv, messages, lastActivity };
  next.unread = unreadCount(next);
  return next;
}

function fromChatMessage(m: ChatMessage, selfId: string, now: number): UiMessage {
  const own = selfId !== "" && m.fromUserId === selfId;
  return {
    key: own && m.clientMsgId ? m.clientMsgId : m.messageId,
    messageId: m.messageId,
    clientMsgId: m.clientMsgId,
    fromUserId: m.fromUserId,
    toUserId: m.toUserId,
    text: m.text,
    seq: m.seq,
    sentAt: tsDate(m.sentAt, now),
    own,
    status: own ? "sent" : "received",
    serverStatus: m.status,
    error: null,
  };
}

/**
 * Inserts or merges a stored message, de-duplicated by message_id, by seq (a conversation has one
 * message per seq, and the server sends a message again when this client's receipt for it did not
 * reach the server before a reconnect) and by own client_msg_id (a pending message and its ack or
 * echo). A duplicate adds no bubble; only a newer server status is taken from it.
 */
function upsertMessage(conv: ConversationState, incoming: UiMessage): ConversationState {
  const index = conv.messages.findIndex(
    (m) =>
      (incoming.messageId !== "" && m.messageId === incoming.messageId) ||
      (incoming.seq !== null && m.seq === incoming.seq) ||
      (incoming.own &&
        m.own &&
        incoming.clientMsgId !== "" &&
        m.clientMsgId === incoming.clientMsgId),
  );
  if (index < 0) return { ...conv, messages: [...conv.messages, incoming] };
  const existing = conv.messages[index] as UiMessage;
  const merged: UiMessage = {
    ...existing,
    messageId: existing.messageId || incoming.messageId,
    fromUserId: incoming.fromUserId || existing.fromUserId,
    seq: incoming.seq ?? existing.seq,
    sentAt: incoming.seq !== null ? incoming.sentAt : existing.sentAt,
    text: existing.text || incoming.text,
    serverStatus:
      incoming.serverStatus > existing.serverStatus ? incoming.serverStatus : existing.serverStatus,
    // An acknowledged message is no longer failed.
    status: incoming.seq !== null && existing.status === "failed" ? "sent" : existing.status,
    error: incoming.seq !== null ? null : existing.error,
  };
  const messages = [...conv.messages];
  messages[index] = merged;
  return { ...conv, messages };
}

function findByClientMsgId(
  conversations: Record<string, ConversationState>,
  clientMsgId: string,
): { conv: ConversationState; message: UiMessage } | null {
  for (const conv of Object.values(conversations)) {
    const message = conv.messages.find((m) => m.own && m.clientMsgId === clientMsgId);
    if (message) return { conv, message };
  }
  return null;
}

function userFromPresence(p: Presence, previous: UserInfo | undefined): UserInfo | null {
  const userId = p.user?.userId;
  if (!userId) return null;
  return {
    userId,
    displayName: p.user?.displayName || previous?.displayName || "",
    presence: presenceKind(p.status),
    lastSeen: p.lastSeen ? timestampDate(p.lastSeen) : (previous?.lastSeen ?? null),
    sessions: p.sessions,
  };
}

/** How many of `users` are ONLINE or AWAY. */
function countOnline(users: Record<string, UserInfo>): number {
  let n = 0;
  for (const u of Object.values(users)) if (u.presence !== "offline") n += 1;
  return n;
}

/**
 * Whether the server has stored a message between this user and the peer of `conv`: then it
 * counts the peer as a conversation peer and lists them in every snapshot while they are online.
 */
function isServerPeer(conv: ConversationState | undefined): boolean {
  return conv !== undefined && conv.messages.some((m) => m.seq !== null);
}

/**
 * `users` as the new user map, with the total kept up. While the users known hold everyone online
 * the server sends no OnlineCount (every change reaches this client), so the total follows them;
 * otherwise it waits for the next OnlineCount.
 */
function withUsers(
  state: Pick<ChatState, "users" | "onlineCount">,
  users: Record<string, UserInfo>,
): Pick<ChatState, "users" | "onlineCount"> {
  const everyone = state.onlineCount <= countOnline(state.users);
  return { users, onlineCount: everyone ? countOnline(users) : state.onlineCount };
}

function apiError(e: ErrorEvent): ApiError {
  return { code: e.code, message: e.message, retryAfterMs: e.retryAfterMs, field: e.field };
}

// ---------------------------------------------------------------------------------------------
// Selectors

/** Conversations with the newest activity first. */
export function selectConversationList(state: ChatState): ConversationState[] {
  return Object.values(state.conversations).sort((a, b) => b.lastActivity - a.lastActivity);
}

/** Total unread messages (for the title badge). */
export function selectTotalUnread(state: ChatState): number {
  return Object.values(state.conversations).reduce((sum, c) => sum + c.unread, 0);
}

/**
 * Others ONLINE or AWAY (this user left out, as in the people list): `listed`, those the store
 * knows, and `total`, on the whole server; `total` is larger only while the server lists a part.
 */
export function selectOnlinePeople(state: Pick<ChatState, "users" | "onlineCount" | "self">): {
  listed: number;
  total: number;
} {
  const known = countOnline(state.users);
  const self = state.users[state.self.userId];
  const listed = known - (self && self.presence !== "offline" ? 1 : 0);
  return { listed, total: listed + Math.max(0, state.onlineCount - known) };
}

/** The own messages waiting in the outbox, oldest first, with their peer. */
export function selectOutboxMessages(state: ChatState): UiMessage[] {
  const out: UiMessage[] = [];
  for (const id of state.outbox) {
    const found = findByClientMsgId(state.conversations, id);
    if (found) out.push(found.message);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The store

export function createChatStore(options: ChatStoreOptions = {}): ChatStore {
  const storage = options.storage;
  const now = options.now ?? Date.now;
  const newId = options.newId ?? (() => uuidv7());
  const defaultName = options.defaultDisplayName ?? (() => "Guest");

  return createStore<ChatState & ChatActions>()((set, get) => {
    /** Applies `fn` to one conversation (created when missing) and recomputes it. */
    const updateConv = (peerId: string, fn: (conv: ConversationState) => ConversationState) => {
      set((state) => {
        const conv = state.conversations[peerId] ?? emptyConversation(peerId);
        return { conversations: { ...state.conversations, [peerId]: finish(fn(conv)) } };
      });
    };
    const setSelf = (patch: Partial<SelfIdentity>) => {
      const self = { ...get().self, ...patch };
      saveSelf(storage, self);
      set({ self });
    };
    const removeFromOutbox = (clientMsgId: string) => {
      if (get().outbox.includes(clientMsgId)) {
        set((state) => ({ outbox: state.outbox.filter((id) => id !== clientMsgId) }));
      }
    };

    const actions: ChatActions = {
      applyServerEvent(event) {
        const e = event.event;
        switch (e.case) {
          case "welcome": {
            const w = e.value;
            setSelf({
              userId: w.user?.userId ?? get().self.userId,
              displayName: w.user?.displayName || get().self.displayName,
              token: w.token || get().self.token,
              sessionId: w.sessionId,
            });
            // A new session starts from a clean slate for transient state.
            set((state) => ({
              connection: { kind: "online", since: now() },
              conversations: Object.fromEntries(
                Object.entries(state.conversations).map(([id, c]) => [
                  id,
                  c.peerTyping ? { ...c, peerTyping: false } : c,
                ]),
              ),
            }));
            break;
          }
          case "message":
            get().applyMessage(e.value);
            break;
          case "ack":
            get().applyAck(e.value);
            break;
          case "status":
            get().applyStatus(e.value);
            break;
          case "typing":
            get().applyTyping(e.value);
            break;
          case "presence":
            get().applyPresenceEvent(e.value);
            break;
          case "pong":
          case "heartbeat":
            break; // keep-alives: the session's idle timer is what watches the stream
          case "error":
            get().applyError(e.value);
            break;
          case undefined:
            break; // an event kind newer than this client: ignore it
        }
      },

      applyPresenceEvent(event) {
        const e = event.event;
        if (e.case === "snapshot") {
          const snapshot = e.value;
          set((state) => {
            // A complete snapshot (online_count no larger than its list) has everyone ONLINE or
            // AWAY: anyone else we know is offline now. A partial one has the directory page, this
            // user and every online conversation peer (the server loads them from the stored
            // messages before the snapshot), so an absent peer is offline too. Anyone else absent
            // may be online outside the page: rather than shown offline they are forgotten, as
            // their changes no longer come (one that does adds them back); they stay as they were
            // while a conversation the server does not know yet (opened, or only unsent messages)
            // needs their name.
            const complete = snapshot.onlineCount <= snapshot.users.length;
            const users: Record<string, UserInfo> = {};
            for (const [id, u] of Object.entries(state.users)) {
              const conv = state.conversations[id];
              if (complete || isServerPeer(conv)) {
                users[id] =
                  u.presence === "offline" ? u : { ...u, presence: "offline", sessions: 0 };
              } else if (conv) {
                users[id] = u;
              }
            }
            for (const p of snapshot.users) {
              const u = userFromPresence(p, state.users[p.user?.userId ?? ""]);
              if (u) users[u.userId] = u;
            }
            return { users, onlineCount: Math.max(snapshot.onlineCount, countOnline(users)) };
          });
        } else if (e.case === "change" && e.value.presence) {
          // Possibly someone new (a vacancy in the page filled, a new peer): they are added.
          const p = e.value.presence;
          set((state) => {
            const u = userFromPresence(p, state.users[p.user?.userId ?? ""]);
            return u ? withUsers(state, { ...state.users, [u.userId]: u }) : {};
          });
        } else if (e.case === "onlineCount") {
          set({ onlineCount: e.value.users });
        }
      },

      applyMessage(message) {
        const selfId = get().self.userId;
        const own = selfId !== "" && message.fromUserId === selfId;
        const peerId = own ? message.toUserId : message.fromUserId;
        if (!peerId) return;
        const ui = fromChatMessage(message, selfId, now());
        updateConv(peerId, (conv) => {
          const next = upsertMessage(conv, ui);
          // The server ends a typing state when the typist sends a message.
          return own ? next : { ...next, peerTyping: false };
        });
        if (own && message.clientMsgId) removeFromOutbox(message.clientMsgId);
      },

      applyAck(ack) {
        const found = findByClientMsgId(get().conversations, ack.clientMsgId);
        if (!found) return; // an ack for a message this tab never wrote: the echo will bring it
        const { message } = found;
        updateConv(found.conv.peerId, (conv) =>
          upsertMessage(conv, {
            ...message,
            messageId: ack.messageId,
            seq: ack.seq,
            sentAt: tsDate(ack.sentAt, now()),
            serverStatus: ack.status,
          }),
        );
        removeFromOutbox(ack.clientMsgId);
      },

      applyStatus(update) {
        if (!update.peerUserId) return;
        updateConv(update.peerUserId, (conv) => {
          if (update.status === MessageStatus.READ) {
            return {
              ...conv,
              peerReadMark: maxBig(conv.peerReadMark, update.seq),
              deliveredMark: maxBig(conv.deliveredMark, update.seq),
            };
          }
          if (update.status === MessageStatus.DELIVERED) {
            return { ...conv, deliveredMark: maxBig(conv.deliveredMark, update.seq) };
          }
          return conv;
        });
      },

      applyTyping(event) {
        if (!event.fromUserId) return;
        updateConv(event.fromUserId, (conv) => ({ ...conv, peerTyping: event.isTyping }));
      },

      applyError(error) {
        if (error.clientMsgId && findByClientMsgId(get().conversations, error.clientMsgId)) {
          get().markFailed(error.clientMsgId, apiError(error));
        } else {
          get().setError(apiError(error));
        }
      },

      applyHistory(peerId, page, older) {
        const selfId = get().self.userId;
        const t = now();
        updateConv(peerId, (conv) => {
          let next = conv;
          for (const m of page.messages) next = upsertMessage(next, fromChatMessage(m, selfId, t));
          const hasMoreHistory =
            older || conv.hasMoreHistory === null ? page.hasMore : conv.hasMoreHistory;
          return {
            ...next,
            hasMoreHistory,
            peerReadMark: maxBig(next.peerReadMark, page.peerReadUpToSeq),
            deliveredMark: maxBig(next.deliveredMark, page.peerReadUpToSeq),
          };
        });
        for (const m of page.messages) {
          if (m.fromUserId === selfId && m.clientMsgId) removeFromOutbox(m.clientMsgId);
        }
      },

      applyConversations(conversations) {
        const selfId = get().self.userId;
        const t = now();
        for (const c of conversations) {
          const peerId = c.peer?.userId;
          if (!peerId) continue;
          set((state) => {
            const previous = state.users[peerId];
            const fromPresence = c.peerPresence ? userFromPresence(c.peerPresence, previous) : null;
            const user: UserInfo = fromPresence ?? {
              userId: peerId,
              displayName: c.peer?.displayName ?? previous?.displayName ?? "",
              presence: previous?.presence ?? "offline",
              lastSeen: previous?.lastSeen ?? null,
              sessions: previous?.sessions ?? 0,
            };
            if (c.peer?.displayName) user.displayName = c.peer.displayName;
            return withUsers(state, { ...state.users, [peerId]: user });
          });
          updateConv(peerId, (conv) => {
            let next = conv;
            if (c.lastMessage)
              next = upsertMessage(next, fromChatMessage(c.lastMessage, selfId, t));
            const lastSeq = c.lastMessage?.seq ?? 0n;
            return {
              ...next,
              readMark: maxBig(next.readMark, c.readUpToSeq),
              peerReadMark: maxBig(next.peerReadMark, c.peerReadUpToSeq),
              deliveredMark: maxBig(next.deliveredMark, c.peerReadUpToSeq),
              serverUnread: c.unreadCount,
              serverUnreadUpTo: maxBig(lastSeq, c.readUpToSeq),
            };
          });
        }
      },

      queueMessage(peerId, text) {
        const self = get().self;
        const clientMsgId = newId();
        const t = now();
        const message: UiMessage = {
          key: clientMsgId,
          messageId: "",
          clientMsgId,
          fromUserId: self.userId,
          toUserId: peerId,
          text,
          seq: null,
          sentAt: new Date(t),
          own: true,
          status: "sending",
          serverStatus: MessageStatus.UNSPECIFIED,
          error: null,
        };
        updateConv(peerId, (conv) => ({
          ...conv,
          messages: [...conv.messages, message],
          lastActivity: Math.max(conv.lastActivity, t),
        }));
        set((state) => ({ outbox: [...state.outbox, clientMsgId] }));
        return clientMsgId;
      },

      retryMessage(clientMsgId) {
        const found = findByClientMsgId(get().conversations, clientMsgId);
        if (!found || found.message.status !== "failed") return;
        updateConv(found.conv.peerId, (conv) => ({
          ...conv,
          messages: conv.messages.map((m) =>
            m.clientMsgId === clientMsgId && m.own ? { ...m, status: "sending", error: null } : m,
          ),
        }));
        if (!get().outbox.includes(clientMsgId)) {
          set((state) => ({ outbox: [...state.outbox, clientMsgId] }));
        }
      },

      markFailed(clientMsgId, error) {
        const found = findByClientMsgId(get().conversations, clientMsgId);
        removeFromOutbox(clientMsgId);
        if (!found || found.message.seq !== null) return; // acknowledged: it did not fail
        updateConv(found.conv.peerId, (conv) => ({
          ...conv,
          messages: conv.messages.map((m) =>
            m.clientMsgId === clientMsgId && m.own ? { ...m, status: "failed", error } : m,
          ),
        }));
      },

      removeFromOutbox,

      markRead(peerId, upToSeq) {
        const conv = get().conversations[peerId];
        if (!conv) return null;
        let target = upToSeq;
        if (target === undefined) {
          target = conv.messages.reduce(
            (max, m) => (!m.own && m.seq !== null && m.seq > max ? m.seq : max),
            conv.serverUnreadUpTo,
          );
        }
        if (target <= conv.readMark) return null;
        const mark = target;
        updateConv(peerId, (c) => ({ ...c, readMark: maxBig(c.readMark, mark) }));
        return mark;
      },

      setOpenPeer(peerId) {
        set({ openPeerId: peerId });
        if (peerId && !get().conversations[peerId]) updateConv(peerId, (c) => c);
      },

      setConnection(connection) {
        set({ connection });
      },

      setDisplayName(name) {
        setSelf({ displayName: name });
      },

      forgetCredentials() {
        setSelf({ userId: "", token: "", sessionId: "" });
      },

      setError(error) {
        set({ lastError: error });
      },

      clearError() {
        set({ lastError: null });
      },
    };

    return {
      self: loadSelf(storage, defaultName),
      users: {},
      onlineCount: 0,
      conversations: {},
      outbox: [],
      openPeerId: null,
      connection: { kind: "idle" },
      lastError: null,
      ...actions,
    };
  });
}
