/**
 * The "N unread messages" divider: where it goes in a conversation, from the read mark the
 * conversation had when it was opened (so it stays put while the chat is open, even though
 * opening it moves the read mark).
 */
import type { ConversationState, UiMessage } from "../store/chat";

/** The read position a conversation was opened with. */
export interface OpenedUnread {
  /** My read mark then: peer messages above it were unread. */
  readMark: bigint;
  /** How many were unread then (what the divider says). */
  count: number;
}

/** A conversation's read position now, to keep as the one it was opened with. */
export function openedUnread(conv: ConversationState | undefined): OpenedUnread {
  return { readMark: conv?.readMark ?? 0n, count: conv?.unread ?? 0 };
}

/** The key of the first peer message above the read mark, or null (no divider). */
export function firstUnreadKey(
  messages: readonly UiMessage[],
  opened: OpenedUnread,
): string | null {
  if (opened.count <= 0) return null;
  const first = messages.find((m) => !m.own && m.seq !== null && m.seq > opened.readMark);
  return first ? first.key : null;
}

export function unreadLabel(count: number): string {
  return count === 1 ? "1 unread message" : `${count.toLocaleString()} unread messages`;
}
