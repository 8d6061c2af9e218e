/**
 * The page's singletons: one store (identity in sessionStorage), one grpc-web transport, one
 * session manager. Import these from the UI; tests build their own with an in-memory server.
 * Call `chatSession.start()` once when the app mounts.
 */
import { randomName } from "../lib/names";
import { createChatStore } from "../store/chat";
import { browserWakeSource, ChatSession } from "./session";
import { createApiClients, getPageTransport } from "./transport";

export const chatStore = createChatStore({
  storage: window.sessionStorage,
  defaultDisplayName: () => randomName(),
});

export const apiClients = createApiClients(getPageTransport(() => chatStore.getState().self.token));

export const chatSession = new ChatSession({
  store: chatStore,
  clients: apiClients,
  wake: browserWakeSource,
});
