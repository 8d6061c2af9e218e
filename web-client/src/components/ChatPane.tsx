/**
 * One conversation: header, bubbles with day separators, the typing indicator, scroll-back
 * through history (older pages load at the top), a jump button when not at the bottom, and the
 * composer. Messages sit at the bottom, just above the composer. Opening a chat with unread
 * messages shows an "N unread messages" line above the first of them and scrolls there; focus
 * goes to the composer. On a phone, Escape goes back to the people list. Visible messages are
 * marked read.
 *
 * Loaded on demand (LazyChatPane.tsx): the first screen does not need it.
 */
import Box from "@mui/material/Box";
import Button from "@mui/material/Button";
import CircularProgress from "@mui/material/CircularProgress";
import Divider from "@mui/material/Divider";
import Fab from "@mui/material/Fab";
import IconButton from "@mui/material/IconButton";
import Typography from "@mui/material/Typography";
import { Fragment, useCallback, useEffect, useLayoutEffect, useRef, useState } from "react";
import { toApiError } from "../api/session";
import { useNow } from "../hooks/useNow";
import { dayLabel, sameDay } from "../lib/time";
import { firstUnreadKey, openedUnread, type OpenedUnread } from "../lib/unread";
import type { UiMessage } from "../store/chat";
import { useChat, useChatStore, useSession } from "./ChatContext";
import { Composer } from "./Composer";
import { BackIcon, DownIcon } from "./icons";
import { MessageBubble } from "./MessageBubble";
import { UnreadDivider } from "./UnreadDivider";
import { UserAvatar } from "./UserAvatar";
import { presenceText } from "./UserList";

const EMPTY: UiMessage[] = [];
/** Within this many pixels of an edge counts as at it. */
const EDGE_PX = 48;
/** Room left above the unread line when scrolling to it. */
const UNREAD_MARGIN_PX = 8;

export interface ChatPaneProps {
  peerId: string;
  /** Back to the people list (phone widths). */
  onBack?: (() => void) | undefined;
  /**
   * The read position when the chat was opened, taken by whoever opened it (LazyChatPane takes
   * it as the chat opens, before this code may have loaded and opening has marked it read).
   * Without it, the position when this view appears.
   */
  opened?: OpenedUnread | undefined;
}

/** A fresh conversation view per peer: scroll state and the unread line belong to one opening. */
export function ChatPane(props: ChatPaneProps) {
  return <Conversation key={props.peerId} {...props} />;
}

/** Whether a tooltip or a popup of MUI is open: Escape is theirs to close first. */
function popupOpen(): boolean {
  return document.querySelector('[role="tooltip"], .MuiPopover-root, .MuiModal-root') !== null;
}

function Conversation(props: ChatPaneProps) {
  const { peerId, onBack } = props;
  const session = useSession();
  const store = useChatStore();
  const conv = useChat((s) => s.conversations[peerId]);
  const user = useChat((s) => s.users[peerId]);
  const now = useNow(30_000);
  const messages = conv?.messages ?? EMPTY;
  const unread = conv?.unread ?? 0;
  const peerTyping = conv?.peerTyping ?? false;
  const hasMore = conv?.hasMoreHistory ?? null;
  const name = user?.displayName || peerId;

  // The read position at opening decides the unread line, and it stays while the chat is open
  // (opening it marks everything read).
  const [opened] = useState<OpenedUnread>(() => props.opened ?? openedUnread(conv));
  const unreadKey = firstUnreadKey(messages, opened);

  const scrollRef = useRef<HTMLDivElement>(null);
  const unreadRef = useRef<HTMLDivElement>(null);
  const atBottomRef = useRef(true);
  const loadingRef = useRef(false);
  const anchorRef = useRef<{ height: number; top: number } | null>(null);
  /** Until the newest page is in, the view goes to the unread line (or the bottom). */
  const toUnreadRef = useRef(opened.count > 0);
  const [atBottom, setAtBottom] = useState(true);
  const [loadingOlder, setLoadingOlder] = useState(false);
  /** The newest message when the person scrolled away from the bottom. */
  const [keyWhenLeft, setKeyWhenLeft] = useState<string | undefined>(undefined);

  const firstKey = messages[0]?.key;
  const last = messages[messages.length - 1];
  const lastKey = last?.key;
  const lastOwn = last?.own ?? false;

  const loadOlder = useCallback(() => {
    const el = scrollRef.current;
    if (loadingRef.current || hasMore === false) return;
    loadingRef.current = true;
    setLoadingOlder(true);
    anchorRef.current = el ? { height: el.scrollHeight, top: el.scrollTop } : null;
    session
      .loadOlder(peerId)
      .catch((err: unknown) => {
        store.getState().setError(toApiError(err));
      })
      .finally(() => {
        loadingRef.current = false;
        setLoadingOlder(false);
      });
  }, [hasMore, peerId, session, store]);

  // An older page came in at the top: keep the view where it was.
  useLayoutEffect(() => {
    const el = scrollRef.current;
    const anchor = anchorRef.current;
    if (!el || !anchor) return;
    anchorRef.current = null;
    el.scrollTop = el.scrollHeight - anchor.height + anchor.top;
  }, [firstKey]);

  // Opened with unread messages: show the first of them near the top (or the bottom, when they
  // all fit), once the newest page has loaded. Otherwise follow a new message at the bottom
  // when at the bottom or own.
  useLayoutEffect(() => {
    const el = scrollRef.current;
    if (!el) return;
    if (toUnreadRef.current && !lastOwn) {
      const line = unreadRef.current;
      el.scrollTop = line ? line.offsetTop - UNREAD_MARGIN_PX : el.scrollHeight;
      atBottomRef.current = el.scrollHeight - el.scrollTop - el.clientHeight < EDGE_PX;
      if (hasMore !== null) toUnreadRef.current = false;
      return;
    }
    toUnreadRef.current = false;
    if (atBottomRef.current || lastOwn) el.scrollTop = el.scrollHeight;
  }, [lastKey, lastOwn, peerTyping, unreadKey, hasMore]);

  // Mark read what is on screen: the newest messages, while the tab is visible.
  useEffect(() => {
    if (unread === 0 || !atBottom || document.visibilityState !== "visible") return;
    void session.markRead(peerId);
  }, [unread, atBottom, peerId, session, lastKey]);
  useEffect(() => {
    const onVisibility = () => {
      if (document.visibilityState === "visible" && atBottomRef.current) {
        void session.markRead(peerId);
      }
    };
    document.addEventListener("visibilitychange", onVisibility);
    return () => {
      document.removeEventListener("visibilitychange", onVisibility);
    };
  }, [peerId, session]);

  // On a phone the chat covers the list: Escape goes back, unless a tooltip or popup is open.
  useEffect(() => {
    if (!onBack) return;
    const onKeyDown = (event: KeyboardEvent) => {
      if (event.key !== "Escape" || event.defaultPrevented || popupOpen()) return;
      event.preventDefault();
      onBack();
    };
    document.addEventListener("keydown", onKeyDown);
    return () => {
      document.removeEventListener("keydown", onKeyDown);
    };
  }, [onBack]);

  const onScroll = () => {
    const el = scrollRef.current;
    if (!el) return;
    const bottom = el.scrollHeight - el.scrollTop - el.clientHeight < EDGE_PX;
    if (bottom !== atBottomRef.current || bottom !== atBottom) {
      atBottomRef.current = bottom;
      setAtBottom(bottom);
      if (!bottom) setKeyWhenLeft(lastKey);
    }
    if (el.scrollTop < EDGE_PX && messages.length > 0 && hasMore !== false) loadOlder();
  };

  const jumpToBottom = () => {
    const el = scrollRef.current;
    if (!el) return;
    el.scrollTop = el.scrollHeight;
    atBottomRef.current = true;
    setAtBottom(true);
  };

  const newBelow = !atBottom && lastKey !== keyWhenLeft;

  return (
    <Box
      component="section"
      aria-label={`Chat with ${name}`}
      sx={{ display: "flex", flexDirection: "column", height: "100%", minHeight: 0 }}
    >
      <Box sx={{ display: "flex", alignItems: "center", gap: 1.5, px: 1.5, py: 1 }}>
        {onBack ? (
          <IconButton aria-label="Back to people" onClick={onBack} data-testid="back-button">
            <BackIcon />
          </IconButton>
        ) : null}
        <UserAvatar userId={peerId} name={name} size={36} />
        <Box sx={{ minWidth: 0 }}>
          <Typography variant="subtitle1" component="h2" noWrap data-testid="chat-peer-name">
            {name}
          </Typography>
          <Typography variant="caption" color="text.secondary" data-testid="chat-peer-presence">
            {user ? presenceText(user, now) : "Offline"}
          </Typography>
        </Box>
      </Box>
      <Divider />
      <Box sx={{ position: "relative", flex: 1, minHeight: 0 }}>
        <Box
          ref={scrollRef}
          onScroll={onScroll}
          role="log"
          aria-label={`Messages with ${name}`}
          aria-live="polite"
          tabIndex={0}
          data-testid="message-list"
          sx={{
            height: "100%",
            overflowY: "auto",
            // The content's offsets (the unread line's) are measured from here.
            position: "relative",
            "&:focus-visible": { outline: "2px solid", outlineColor: "primary.main" },
          }}
        >
          {/* At least as tall as the view and pushed down: a short conversation sits just above
              the composer; a long one scrolls as usual. */}
          <Box
            sx={{
              minHeight: "100%",
              display: "flex",
              flexDirection: "column",
              justifyContent: "flex-end",
              py: 1,
            }}
          >
            {hasMore === true ? (
              <Box sx={{ display: "flex", justifyContent: "center", py: 1 }}>
                {loadingOlder ? (
                  <CircularProgress size={20} aria-label="Loading older messages" />
                ) : (
                  <Button size="small" onClick={loadOlder} data-testid="load-older">
                    Load older messages
                  </Button>
                )}
              </Box>
            ) : null}
            {messages.length === 0 ? (
              <Typography color="text.secondary" sx={{ textAlign: "center", mb: 2, px: 2 }}>
                No messages yet. Say hello to {name}!
              </Typography>
            ) : null}
            {messages.map((m, i) => {
              const previous = i > 0 ? messages[i - 1] : undefined;
              const newDay = !previous || !sameDay(previous.sentAt, m.sentAt);
              return (
                <Fragment key={m.key}>
                  {newDay ? (
                    <Divider
                      sx={{ my: 1, mx: 2, typography: "caption", color: "text.secondary" }}
                      data-testid="day-separator"
                    >
                      {dayLabel(m.sentAt, new Date(now))}
                    </Divider>
                  ) : null}
                  {m.key === unreadKey ? (
                    <UnreadDivider ref={unreadRef} count={opened.count} />
                  ) : null}
                  <MessageBubble
                    message={m}
                    author={m.own ? "You" : name}
                    onRetry={(id) => {
                      session.retryMessage(id);
                    }}
                  />
                </Fragment>
              );
            })}
          </Box>
        </Box>
        {!atBottom ? (
          <Fab
            size="small"
            variant={newBelow ? "extended" : "circular"}
            color={newBelow ? "primary" : "default"}
            onClick={jumpToBottom}
            aria-label={newBelow ? "New messages: jump to the latest" : "Jump to the latest"}
            data-testid="jump-to-latest"
            sx={{ position: "absolute", right: 16, bottom: 12 }}
          >
            <DownIcon sx={{ mr: newBelow ? 0.5 : 0 }} />
            {newBelow ? "New messages" : null}
          </Fab>
        ) : null}
      </Box>
      <Box sx={{ minHeight: 22, px: 2 }}>
        {peerTyping ? (
          <Typography
            variant="caption"
            color="text.secondary"
            data-testid="typing-indicator"
            aria-live="polite"
            sx={{ fontStyle: "italic" }}
          >
            {name} is typing...
          </Typography>
        ) : null}
      </Box>
      <Divider />
      <Composer peerId={peerId} peerName={name} autoFocus />
    </Box>
  );
}
