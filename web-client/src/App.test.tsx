// @vitest-environment jsdom
/** The whole page against the in-memory server: a message arrives, is badged, opened and read. */
import { cleanup, render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, expect, it } from "vitest";
import { App } from "./App";
import { ChatSession } from "./api/session";
import { createApiClients } from "./api/transport";
import { Backoff } from "./lib/backoff";
import { createChatStore } from "./store/chat";
import { createFakeServer, memoryStorage, type FakeServer } from "./test/fakeServer";

const sessions: ChatSession[] = [];

afterEach(async () => {
  cleanup();
  await Promise.all(sessions.splice(0).map((s) => s.stop()));
});

function client(server: FakeServer, name: string) {
  const store = createChatStore({ storage: memoryStorage(), defaultDisplayName: () => name });
  const session = new ChatSession({
    store,
    clients: createApiClients(server.transport(() => store.getState().self.token)),
    backoff: new Backoff({ baseMs: 5, maxMs: 20 }),
  });
  sessions.push(session);
  return { store, session };
}

it("shows a new message as unread in the list and the title, and reads it when opened", async () => {
  const server = createFakeServer();
  const ann = client(server, "Ann");
  const bob = client(server, "Bob");
  bob.session.start();
  await waitFor(() => {
    expect(bob.store.getState().connection.kind).toBe("online");
  });

  render(<App store={ann.store} session={ann.session} />);
  expect(screen.getByTestId("self-name").textContent).toBe("Ann");
  const bobId = bob.store.getState().self.userId;
  const row = await screen.findByTestId(`user-${bobId}`);
  expect(row.dataset.presence).toBe("online");

  const annId = ann.store.getState().self.userId;
  bob.session.sendMessage(annId, "hi Ann");
  await waitFor(() => {
    expect(within(screen.getByTestId(`unread-${bobId}`)).getByText("1")).toBeTruthy();
  });
  expect(document.title).toBe("(1) FastChat");

  await userEvent.setup().click(screen.getByTestId(`user-${bobId}`));
  await screen.findByText("hi Ann", { selector: "[data-testid=message-text]" });
  await waitFor(() => {
    expect(document.title).toBe("FastChat");
  });
  // Bob sees his message turn READ.
  await waitFor(() => {
    const conv = bob.store.getState().conversations[annId];
    expect(conv?.messages[0]?.status).toBe("read");
  });
});
