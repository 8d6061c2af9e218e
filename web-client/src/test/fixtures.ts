/**
 * A store seen from "me" and a session that only records what the screens ask of it, for
 * rendering the screens without a server (the reading and people-list tests).
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { SessionApi } from "../components/ChatContext";
import {
  ChatMessageSchema,
  MessageStatus,
  SendMessageResponseSchema,
  StatusUpdateSchema,
} from "../gen/fastchat/v1/chat_pb";
import { PresenceEventSchema, PresenceStatus } from "../gen/fastchat/v1/presence_pb";
import { createChatStore, type ChatStore } from "../store/chat";
import { memoryStorage } from "./fakeServer";

export const ME = "me-0001";

export function storeAsMe(): ChatStore {
  const store = createChatStore({ storage: memoryStorage(), defaultDisplayName: () => "Me" });
  store.setState({ self: { userId: ME, displayName: "Me", token: "t", sessionId: "s" } });
  return store;
}

/** These people online (a complete snapshot). */
export function online(store: ChatStore, people: Record<string, string>): void {
  store.getState().applyPresenceEvent(
    create(PresenceEventSchema, {
      event: {
        case: "snapshot",
        value: {
          users: Object.entries(people).map(([userId, displayName]) => ({
            user: { userId, displayName },
            status: PresenceStatus.ONLINE,
            sessions: 1,
          })),
        },
      },
    }),
  );
}

/** A message from `from` to me, stored with `seq`. */
export function peerMessage(
  store: ChatStore,
  from: string,
  seq: bigint,
  text: string,
  sentAt = new Date(),
): void {
  store.getState().applyMessage(
    create(ChatMessageSchema, {
      messageId: `m-${from}-${seq}`,
      fromUserId: from,
      toUserId: ME,
      text,
      seq,
      sentAt: timestampFromDate(sentAt),
      status: MessageStatus.SENT,
    }),
  );
}

/** My message to `peerId`, acknowledged with `seq`; returns its client_msg_id. */
export function ownMessage(store: ChatStore, peerId: string, seq: bigint, text: string): string {
  const id = store.getState().queueMessage(peerId, text);
  store.getState().applyAck(
    create(SendMessageResponseSchema, {
      clientMsgId: id,
      messageId: `m-${id}`,
      seq,
      sentAt: timestampFromDate(new Date()),
      status: MessageStatus.SENT,
    }),
  );
  return id;
}

/** The peer's receipt: DELIVERED or READ up to `seq`. */
export function peerStatus(store: ChatStore, peerId: string, seq: bigint, read: boolean): void {
  store.getState().applyStatus(
    create(StatusUpdateSchema, {
      peerUserId: peerId,
      seq,
      status: read ? MessageStatus.READ : MessageStatus.DELIVERED,
    }),
  );
}

/** A session that records the screens' calls and applies them to the store only. */
export function recordingSession(store: ChatStore): { session: SessionApi; calls: string[] } {
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
    typed: () => undefined,
    stoppedTyping: () => undefined,
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
