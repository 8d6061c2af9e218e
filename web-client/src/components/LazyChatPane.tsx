/**
 * The conversation view, loaded on demand: the first screen (the people list) does not need it,
 * its composer, its links or its tooltips, so they come in a chunk of their own. It is fetched
 * when the browser is idle after the page has loaded, so opening a chat rarely waits for it;
 * until it is there the pane keeps its place, empty (and says so should it fail to load).
 *
 * The read position a chat is opened with (for its unread line) is taken here, as it opens:
 * the view itself may appear only after opening has marked everything read.
 */
import Box from "@mui/material/Box";
import { lazy, Suspense, useState } from "react";
import { openedUnread, type OpenedUnread } from "../lib/unread";
import type { ChatPaneProps } from "./ChatPane";
import { useChatStore } from "./ChatContext";
import { LoadBoundary } from "./LoadBoundary";

const load = () => import("./ChatPane");

const LazyPane = lazy(() => load().then((m) => ({ default: m.ChatPane })));

/** Fetches the chunk now (it is fetched once; later calls reuse it). */
export function preloadChatPane(): void {
  void load();
}

if (typeof window !== "undefined") {
  const idle = () => {
    if ("requestIdleCallback" in window) window.requestIdleCallback(preloadChatPane);
    else setTimeout(preloadChatPane, 1000);
  };
  if (document.readyState === "complete") idle();
  else window.addEventListener("load", idle, { once: true });
}

export function ChatPane(props: Omit<ChatPaneProps, "opened">) {
  const store = useChatStore();
  const take = (peerId: string) => ({
    peerId,
    position: openedUnread(store.getState().conversations[peerId]),
  });
  const [opened, setOpened] = useState<{ peerId: string; position: OpenedUnread }>(() =>
    take(props.peerId),
  );
  if (opened.peerId !== props.peerId) setOpened(take(props.peerId));
  return (
    <LoadBoundary>
      <Suspense fallback={<Box sx={{ height: "100%" }} data-testid="chat-loading" />}>
        <LazyPane {...props} opened={opened.position} />
      </Suspense>
    </LoadBoundary>
  );
}
