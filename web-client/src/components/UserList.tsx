/**
 * People: conversations first (newest activity on top), then everyone else online or away.
 * Each row shows presence, the last message or "last seen", and an unread badge. Arrow keys,
 * Home and End move between rows; Enter opens one. When the server lists only part of the people
 * online (its directory page), a line on top says how many there are in all.
 */
import Avatar from "@mui/material/Avatar";
import Badge from "@mui/material/Badge";
import List from "@mui/material/List";
import ListItemAvatar from "@mui/material/ListItemAvatar";
import ListItemButton from "@mui/material/ListItemButton";
import ListItemText from "@mui/material/ListItemText";
import ListSubheader from "@mui/material/ListSubheader";
import Typography from "@mui/material/Typography";
import { useMemo, type KeyboardEvent } from "react";
import { useNow } from "../hooks/useNow";
import { ago } from "../lib/time";
import {
  selectOnlinePeople,
  type ChatState,
  type PresenceKind,
  type UserInfo,
} from "../store/chat";
import { useChat } from "./ChatContext";

export interface UserRow {
  userId: string;
  displayName: string;
  presence: PresenceKind;
  lastSeen: Date | null;
  unread: number;
  preview: string;
  previewOwn: boolean;
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

const PRESENCE_COLOR: Record<PresenceKind, string> = {
  online: "success.main",
  away: "warning.main",
  offline: "grey.500",
};

function initials(name: string): string {
  const caps = name.match(/[A-Z]/g);
  return (caps ? caps.slice(0, 2).join("") : name.slice(0, 2)).toUpperCase();
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

  const onKeyDown = (event: KeyboardEvent<HTMLUListElement>) => {
    const items = Array.from(event.currentTarget.querySelectorAll<HTMLElement>("[data-user-row]"));
    const index = items.findIndex((el) => el === document.activeElement);
    let next: number;
    if (event.key === "ArrowDown") next = Math.min(items.length - 1, index + 1);
    else if (event.key === "ArrowUp") next = Math.max(0, index - 1);
    else if (event.key === "Home") next = 0;
    else if (event.key === "End") next = items.length - 1;
    else return;
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
    <List aria-label="People" data-testid="user-list" onKeyDown={onKeyDown} sx={{ py: 0 }}>
      {summary ? (
        <ListSubheader
          data-testid="online-summary"
          sx={{
            lineHeight: 2.5,
            fontSize: "0.75rem",
            fontWeight: 400,
            color: "text.secondary",
            whiteSpace: "nowrap",
            overflow: "hidden",
            textOverflow: "ellipsis",
          }}
        >
          {summary}
        </ListSubheader>
      ) : null}
      {parsed.map((row) => {
        const status = presenceText(row, now);
        const preview = row.typing
          ? "typing..."
          : row.preview
            ? `${row.previewOwn ? "You: " : ""}${row.preview}`
            : status;
        return (
          <ListItemButton
            key={row.userId}
            data-user-row
            data-testid={`user-${row.userId}`}
            data-presence={row.presence}
            selected={row.userId === openPeerId}
            onClick={() => {
              props.onSelect(row.userId);
            }}
            aria-label={`${row.displayName}, ${status}${row.unread > 0 ? `, ${row.unread} unread` : ""}`}
          >
            <ListItemAvatar>
              <Badge
                overlap="circular"
                variant="dot"
                anchorOrigin={{ vertical: "bottom", horizontal: "right" }}
                sx={{
                  "& .MuiBadge-badge": {
                    bgcolor: PRESENCE_COLOR[row.presence],
                    boxShadow: (t) => `0 0 0 2px ${t.palette.background.paper}`,
                  },
                }}
                data-testid={`presence-${row.userId}`}
              >
                <Avatar>{initials(row.displayName)}</Avatar>
              </Badge>
            </ListItemAvatar>
            <ListItemText
              primary={row.displayName}
              secondary={
                <>
                  {preview}
                  {row.preview ? (
                    <Typography component="span" variant="caption" sx={{ display: "block" }}>
                      {status}
                    </Typography>
                  ) : null}
                </>
              }
              slotProps={{
                primary: { noWrap: true, sx: { fontWeight: row.unread > 0 ? 700 : 400 } },
                secondary: { noWrap: true },
              }}
            />
            {row.unread > 0 ? (
              <Badge
                color="primary"
                badgeContent={row.unread}
                max={99}
                sx={{ mr: 1.5 }}
                data-testid={`unread-${row.userId}`}
              />
            ) : null}
          </ListItemButton>
        );
      })}
    </List>
  );
}
