/**
 * Hands the store and the session to the components. The app passes its singletons
 * (api/app.ts); tests pass a store of their own and a session over the in-memory server.
 */
import { createContext, useContext, type ReactNode } from "react";
import { useStore } from "zustand";
import type { ChatSession } from "../api/session";
import type { ChatActions, ChatState, ChatStore } from "../store/chat";

/** What the screens call on the session (ChatSession has it all). */
export type SessionApi = Pick<
  ChatSession,
  | "sendMessage"
  | "retryMessage"
  | "openPeer"
  | "loadOlder"
  | "markRead"
  | "typed"
  | "stoppedTyping"
  | "setAway"
  | "rename"
  | "reconnectNow"
>;

interface ChatContextValue {
  store: ChatStore;
  session: SessionApi;
}

const ChatContext = createContext<ChatContextValue | null>(null);

export function ChatProvider(props: {
  store: ChatStore;
  session: SessionApi;
  children: ReactNode;
}) {
  return (
    <ChatContext value={{ store: props.store, session: props.session }}>
      {props.children}
    </ChatContext>
  );
}

function useChatContext(): ChatContextValue {
  const value = useContext(ChatContext);
  if (!value) throw new Error("ChatProvider is missing");
  return value;
}

/** A slice of the store; re-renders only when the selected value changes. */
export function useChat<T>(selector: (state: ChatState & ChatActions) => T): T {
  return useStore(useChatContext().store, selector);
}

export function useChatStore(): ChatStore {
  return useChatContext().store;
}

export function useSession(): SessionApi {
  return useChatContext().session;
}
