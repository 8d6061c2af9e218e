/**
 * People: conversations first (newest activity on top), then everyone else online or away.
 * Each row shows presence, the last message and its time or "last seen", and an unread badge.
 * The list is one Tab stop (a listbox with a roving tabindex): arrow keys, Home and End move
 * between rows; Enter or Space opens one. Rows are plain elements rather than MUI list items: the
 * list is on the first screen, whose JavaScript is kept small. When the server lists only part of the people online
 * (its directory page), a line on top says how many there are in all.
 */
import Box from "@mui/material/Box";
import Typography from "@mui/material/Typography";
import { alpha } from "@mui/material/styles";
import { useMemo, useState, type KeyboardEvent } from "react";
import { useNow } from "../hooks/useNow";
import { visuallyHidden } from "../lib/a11y";
import { rovingTarget, tabStopId } from "../lib/roving";
import { ago, formatFullDateTime, listTime } from "../lib/time";
import { unreadLabel } from "../lib/unread";
import {
  selectOnlinePeople,
  type ChatState,
  type PresenceKind,
  type UserInfo,
} from "../store/chat";
import { useChat } from "./ChatContext";
import { UserAvatar } from "./UserAvatar";

export interface UserRow {
  userId: string;
  displayName: string;
  presence: PresenceKind;
  lastSeen: Date | null;
  unread: number;
  preview: string;
  previewOwn: boolean;
  /** When the last message was sent (null without one). */
  lastAt: Date | null;
  lastActivity: number;
  typing: boolean;
}

/** The rows of the list, from the users and conversations in the store. */
export function userRows(
  state: Pick<ChatState, "users" | "conversations">,
  selfId: string,
): UserRow[] {
  const ids = new Set<string>();
  for (const id of Object.keys(state.conversations)) {
    const conv = state.conversations[id];
    if (conv && (conv.messages.length > 0 || conv.unread > 0)) ids.add(id);
  }
  for (const u of Object.values(state.users)) if (u.presence !== "offline") ids.add(u.userId);
  ids.delete(selfId);
  ids.delete("");
  const rows = [...ids].map((id): UserRow => {
    const user: UserInfo | undefined = state.users[id];
    const conv = state.conversations[id];
    const last = conv?.messages[conv.messages.length - 1];
    return {
      userId: id,
      displayName: user?.displayName || id,
      presence: user?.presence ?? "offline",
      lastSeen: user?.lastSeen ?? null,
      unread: conv?.unread ?? 0,
      preview: last?.text ?? "",
      previewOwn: last?.own ?? false,
      lastAt: last?.sentAt ?? null,
      lastActivity: conv?.lastActivity ?? 0,
      typing: conv?.peerTyping ?? false,
    };
  });
  const rank: Record<PresenceKind, number> = { online: 0, away: 1, offline: 2 };
  return rows.sort(
    (a, b) =>
      b.lastActivity - a.lastActivity ||
      rank[a.presence] - rank[b.presence] ||
      a.displayName.localeCompare(b.displayName),
  );
}

export function presenceText(row: Pick<UserRow, "presence" | "lastSeen">, now: number): string {
  if (row.presence === "online") return "Online";
  if (row.presence === "away") return "Away";
  return row.lastSeen ? `Last seen ${ago(row.lastSeen, now)}` : "Offline";
}

/** "Showing 100 of 2,345 online" when more people are online than listed, otherwise null. */
export function onlineSummary(people: { listed: number; total: number }): string | null {
  if (people.total <= people.listed) return null;
  return `Showing ${people.listed.toLocaleString()} of ${people.total.toLocaleString()} online`;
}

export function UserList(props: { onSelect: (userId: string) => void }) {
  const users = useChat((s) => s.users);
  const conversations = useChat((s) => s.conversations);
  const selfId = useChat((s) => s.self.userId);
  const openPeerId = useChat((s) => s.openPeerId);
  const summary = useChat((s) => onlineSummary(selectOnlinePeople(s)));
  const now = useNow(30_000);
  const parsed = useMemo(
    () => userRows({ users, conversations }, selfId),
    [users, conversations, selfId],
  );
  /** The row last focused: it keeps the Tab stop while it is listed. */
  const [focusedId, setFocusedId] = useState<string | null>(null);
  const tabStop = tabStopId(
    parsed.map((r) => r.userId),
    focusedId,
    openPeerId,
  );

  const onKeyDown = (event: KeyboardEvent<HTMLElement>) => {
    const items = Array.from(event.currentTarget.querySelectorAll<HTMLElement>("[data-user-row]"));
    const index = items.findIndex((el) => el === document.activeElement);
    if ((event.key === "Enter" || event.key === " ") && index >= 0) {
      event.preventDefault();
      const id = items[index]?.dataset.userId;
      if (id) props.onSelect(id);
      return;
    }
    const next = rovingTarget(event.key, index, items.length);
    if (next === null) return;
    event.preventDefault();
    items[next]?.focus();
  };

  if (parsed.length === 0 && summary === null) {
    return (
      <Typography sx={{ p: 3 }} color="text.secondary" data-testid="user-list-empty">
        Nobody else is here yet. Open this page in another window to chat with yourself.
      </Typography>
    );
  }

  return (
    <>
      {summary ? (
        <Typography
          data-testid="online-summary"
          variant="caption"
          color="text.secondary"
          sx={{
            display: "block",
            px: 2,
            lineHeight: 2.5,
            position: "sticky",
            top: 0,
            zIndex: 1,
            bgcolor: "background.paper",
            whiteSpace: "nowrap",
            overflow: "hidden",
            textOverflow: "ellipsis",
          }}
        >
          {summary}
        </Typography>
      ) : null}
      <Box role="listbox" aria-label="People" data-testid="user-list" onKeyDown={onKeyDown}>
        {parsed.map((row) => {
          const status = presenceText(row, now);
          const preview = row.typing
            ? "typing..."
            : row.preview
              ? `${row.previewOwn ? "You: " : ""}${row.preview}`
              : status;
          const selected = row.userId === openPeerId;
          const weight = row.unread > 0 ? 700 : 400;
          return (
            <Box
              key={row.userId}
              role="option"
              aria-selected={selected}
              tabIndex={row.userId === tabStop ? 0 : -1}
              data-user-row
              data-user-id={row.userId}
              data-testid={`user-${row.userId}`}
              data-presence={row.presence}
              onClick={() => {
                props.onSelect(row.userId);
              }}
              onFocus={() => {
                setFocusedId(row.userId);
              }}
              sx={(t) => ({
                display: "flex",
                alignItems: "center",
                gap: 2,
                px: 2,
                py: 1,
                cursor: "pointer",
                outline: "none",
                userSelect: "none",
                bgcolor: selected
                  ? alpha(t.palette.primary.main, t.palette.action.selectedOpacity)
                  : "transparent",
                "&:hover": {
                  bgcolor: selected
                    ? alpha(
                        t.palette.primary.main,
                        t.palette.action.selectedOpacity + t.palette.action.hoverOpacity,
                      )
                    : t.palette.action.hover,
                },
                "&:focus-visible": { boxShadow: `inset 0 0 0 2px ${t.palette.primary.main}` },
              })}
            >
              <UserAvatar userId={row.userId} name={row.displayName} presence={row.presence} />
              <Box sx={{ flex: 1, minWidth: 0 }}>
                <Typography noWrap sx={{ fontWeight: weight }}>
                  {row.displayName}
                </Typography>
                <Typography variant="body2" color="text.secondary" noWrap>
                  {preview}
                </Typography>
                {row.preview ? (
                  <Typography variant="caption" color="text.secondary" noWrap component="p">
                    {status}
                  </Typography>
                ) : null}
              </Box>
              <Box
                sx={{
                  display: "flex",
                  flexDirection: "column",
                  alignItems: "flex-end",
                  alignSelf: "stretch",
                  justifyContent: "space-between",
                  gap: 0.5,
                  py: 0.25,
                  flexShrink: 0,
                }}
              >
                {row.lastAt ? (
                  <Typography
                    component="time"
                    variant="caption"
                    color={row.unread > 0 ? "primary" : "text.secondary"}
                    dateTime={row.lastAt.toISOString()}
                    title={formatFullDateTime(row.lastAt)}
                    data-testid={`last-time-${row.userId}`}
                    sx={{ whiteSpace: "nowrap", fontWeight: weight }}
                  >
                    {listTime(row.lastAt, new Date(now))}
                  </Typography>
                ) : null}
                {row.unread > 0 ? (
                  <Box
                    component="span"
                    data-testid={`unread-${row.userId}`}
                    data-count={row.unread}
                    sx={{
                      minWidth: 20,
                      height: 20,
                      px: 0.75,
                      borderRadius: 10,
                      bgcolor: "primary.main",
                      color: "primary.contrastText",
                      fontSize: 12,
                      fontWeight: 700,
                      lineHeight: "20px",
                      textAlign: "center",
                    }}
                  >
                    <span aria-hidden="true">{row.unread > 99 ? "99+" : row.unread}</span>
                    <Box component="span" sx={visuallyHidden}>
                      {unreadLabel(row.unread)}
                    </Box>
                  </Box>
                ) : null}
              </Box>
            </Box>
          );
        })}
      </Box>
    </>
  );
}
