/**
 * What the page tells the world besides chat: the unread count in the title, AWAY after the tab
 * has been hidden for a while (ONLINE when it is back), and opt-in desktop notifications for new
 * messages while hidden.
 */
import { useCallback, useEffect, useState } from "react";
import type { ChatStore } from "../store/chat";
import type { SessionApi } from "../components/ChatContext";

export const AWAY_AFTER_MS = 60_000;

export function totalUnread(store: ChatStore): number {
  const { conversations, self } = store.getState();
  return Object.values(conversations)
    .filter((c) => c.peerId !== self.userId)
    .reduce((sum, c) => sum + c.unread, 0);
}

/** "(3) FastChat" while there is something unread. */
export function useTitleBadge(store: ChatStore, base = "FastChat"): void {
  useEffect(() => {
    const update = () => {
      const n = totalUnread(store);
      document.title = n > 0 ? `(${n}) ${base}` : base;
    };
    update();
    return store.subscribe(update);
  }, [store, base]);
}

/** AWAY when the tab has been hidden for `afterMs`, ONLINE as soon as it is visible again. */
export function useAwayWhenHidden(session: SessionApi, afterMs = AWAY_AFTER_MS): void {
  useEffect(() => {
    let timer: ReturnType<typeof setTimeout> | null = null;
    let away = false;
    const onVisibility = () => {
      if (timer) clearTimeout(timer);
      timer = null;
      if (document.visibilityState === "hidden") {
        timer = setTimeout(() => {
          away = true;
          void session.setAway(true);
        }, afterMs);
      } else if (away) {
        away = false;
        void session.setAway(false);
      }
    };
    document.addEventListener("visibilitychange", onVisibility);
    return () => {
      if (timer) clearTimeout(timer);
      document.removeEventListener("visibilitychange", onVisibility);
    };
  }, [session, afterMs]);
}

function notificationsSupported(): boolean {
  return typeof window !== "undefined" && "Notification" in window;
}

export type NotificationState = "unsupported" | "off" | "on" | "denied";

/** Desktop notifications, only after the person asked for them (a button). */
export function useDesktopNotifications(store: ChatStore): {
  state: NotificationState;
  enable: () => void;
} {
  const [state, setState] = useState<NotificationState>(() => {
    if (!notificationsSupported()) return "unsupported";
    return Notification.permission === "denied" ? "denied" : "off";
  });

  const enable = useCallback(() => {
    if (!notificationsSupported()) return;
    void Notification.requestPermission().then((permission) => {
      setState(permission === "granted" ? "on" : permission === "denied" ? "denied" : "off");
    });
  }, []);

  useEffect(() => {
    if (state !== "on") return;
    return store.subscribe((next, prev) => {
      if (document.visibilityState !== "hidden") return;
      for (const conv of Object.values(next.conversations)) {
        const before = prev.conversations[conv.peerId];
        if (!before || conv.unread <= before.unread) continue;
        const last = [...conv.messages].reverse().find((m) => !m.own);
        if (!last) continue;
        const from = next.users[conv.peerId]?.displayName ?? "Someone";
        try {
          new Notification(`${from} on FastChat`, { body: last.text, tag: conv.peerId });
        } catch {
          // Some browsers only allow notifications from a service worker: skip them there.
        }
      }
    });
  }, [store, state]);

  return { state, enable };
}
