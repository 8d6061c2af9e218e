/**
 * One conversation: header, bubbles with day separators, the typing indicator, scroll-back
 * through history (older pages load at the top), a jump button when not at the bottom, and the
 * composer. Visible messages are marked read.
 */
import Avatar from "@mui/material/Avatar";
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
import type { UiMessage } from "../store/chat";
import { useChat, useChatStore, useSession } from "./ChatContext";
import { Composer } from "./Composer";
import { BackIcon, DownIcon } from "./icons";
import { MessageBubble } from "./MessageBubble";
import { presenceText } from "./UserList";

const EMPTY: UiMessage[] = [];
/** Within this many pixels of an edge counts as at it. */
const EDGE_PX = 48;

export function ChatPane(props: { peerId: string; onBack?: (() => void) | undefined }) {
  const { peerId } = props;
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

  const scrollRef = useRef<HTMLDivElement>(null);
  const atBottomRef = useRef(true);
  const loadingRef = useRef(false);
  const anchorRef = useRef<{ height: number; top: number } | null>(null);
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

  // A new message at the bottom (or another conversation): follow it when at the bottom or own.
  useLayoutEffect(() => {
    const el = scrollRef.current;
    if (!el) return;
    if (atBottomRef.current || lastOwn) el.scrollTop = el.scrollHeight;
  }, [lastKey, lastOwn, peerId, peerTyping]);

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

  const onScroll = () => {
    const el = scrollRef.current;
    if (!el) return;
    const bottom = el.scrollHeight - el.scrollTop - el.clientHeight < EDGE_PX;
    if (bottom !== atBottomRef.current) {
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
    <Box sx={{ display: "flex", flexDirection: "column", height: "100%", minHeight: 0 }}>
      <Box sx={{ display: "flex", alignItems: "center", gap: 1.5, px: 1.5, py: 1 }}>
        {props.onBack ? (
          <IconButton aria-label="Back to people" onClick={props.onBack} data-testid="back-button">
            <BackIcon />
          </IconButton>
        ) : null}
        <Avatar sx={{ width: 36, height: 36 }}>{name.slice(0, 1).toUpperCase()}</Avatar>
        <Box sx={{ minWidth: 0 }}>
          <Typography variant="subtitle1" noWrap data-testid="chat-peer-name">
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
          aria-label={`Conversation with ${name}`}
          aria-live="polite"
          data-testid="message-list"
          sx={{ height: "100%", overflowY: "auto", py: 1 }}
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
            <Typography color="text.secondary" sx={{ textAlign: "center", mt: 4, px: 2 }}>
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
                <MessageBubble
                  message={m}
                  onRetry={(id) => {
                    session.retryMessage(id);
                  }}
                />
              </Fragment>
            );
          })}
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
      <Composer key={peerId} peerId={peerId} peerName={name} />
    </Box>
  );
}
