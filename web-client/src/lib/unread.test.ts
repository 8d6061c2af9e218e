import { describe, expect, it } from "vitest";
import { MessageStatus } from "../gen/fastchat/v1/chat_pb";
import type { UiMessage } from "../store/chat";
import { firstUnreadKey, unreadLabel } from "./unread";

function message(key: string, seq: bigint | null, own: boolean): UiMessage {
  return {
    key,
    messageId: key,
    clientMsgId: "",
    fromUserId: own ? "me" : "peer",
    toUserId: own ? "peer" : "me",
    text: key,
    seq,
    sentAt: new Date(0),
    own,
    status: own ? "sent" : "received",
    serverStatus: MessageStatus.SENT,
    error: null,
  };
}

describe("firstUnreadKey", () => {
  const messages = [
    message("p1", 1n, false),
    message("o2", 2n, true),
    message("p3", 3n, false),
    message("o4", 4n, true),
    message("p5", 5n, false),
    message("pending", null, true),
  ];

  it("is the first peer message above the read mark the chat was opened with", () => {
    expect(firstUnreadKey(messages, { readMark: 1n, count: 2 })).toBe("p3");
    expect(firstUnreadKey(messages, { readMark: 3n, count: 1 })).toBe("p5");
    expect(firstUnreadKey(messages, { readMark: 0n, count: 3 })).toBe("p1");
  });

  it("is none when nothing was unread at opening, or nothing above the mark is loaded", () => {
    expect(firstUnreadKey(messages, { readMark: 1n, count: 0 })).toBeNull();
    expect(firstUnreadKey(messages, { readMark: 5n, count: 2 })).toBeNull();
    expect(firstUnreadKey([], { readMark: 0n, count: 2 })).toBeNull();
  });
});

describe("unreadLabel", () => {
  it("counts in words", () => {
    expect(unreadLabel(1)).toBe("1 unread message");
    expect(unreadLabel(3)).toBe("3 unread messages");
  });
});
