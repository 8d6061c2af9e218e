// @vitest-environment jsdom
/**
 * Reading a conversation: the unread line, links, ticks, times and authors for screen readers,
 * refusals, focus and Escape. Rendered against a real store with a recording session.
 */
import { act, cleanup, render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { ThemeProvider } from "@mui/material/styles";
import type { ReactNode } from "react";
import { afterEach, describe, expect, it } from "vitest";
import { MessageStatus } from "../gen/fastchat/v1/chat_pb";
import { contrastRatio } from "../lib/contrast";
import { formatFullDateTime } from "../lib/time";
import type { ChatStore, MessageState, UiMessage } from "../store/chat";
import {
  ME,
  online,
  ownMessage,
  peerMessage,
  peerStatus,
  recordingSession,
  storeAsMe,
} from "../test/fixtures";
import { makeTheme, OWN_BUBBLE, type Mode } from "../theme";
import { ChatProvider, type SessionApi } from "./ChatContext";
import { ChatPane } from "./ChatPane";
import { ChatPane as LazyChatPane } from "./LazyChatPane";
import { MessageBubble } from "./MessageBubble";
import { MessageText } from "./MessageText";
import { STATUS_LABEL, StatusTick, TICK_COLOR, type TickStatus } from "./StatusTick";

afterEach(() => {
  cleanup();
});

const ALEX = "alex-0002";

function renderWith(store: ChatStore, session: SessionApi, node: ReactNode, mode: Mode = "light") {
  return render(
    <ThemeProvider theme={makeTheme(mode)}>
      <ChatProvider store={store} session={session}>
        {node}
      </ChatProvider>
    </ThemeProvider>,
  );
}

/** Alex and me: peer messages 1-2 read, then my 3, then Alex's 4-6 unread. */
function conversationWithUnread(): ChatStore {
  const store = storeAsMe();
  online(store, { [ALEX]: "Alex Brown" });
  peerMessage(store, ALEX, 1n, "one");
  peerMessage(store, ALEX, 2n, "two");
  store.getState().markRead(ALEX);
  ownMessage(store, ALEX, 3n, "three");
  peerMessage(store, ALEX, 4n, "four");
  peerMessage(store, ALEX, 5n, "five");
  peerMessage(store, ALEX, 6n, "six");
  return store;
}

describe("the unread line", () => {
  it("sits above the first unread message, says how many, and stays once they are read", () => {
    const store = conversationWithUnread();
    const { session, calls } = recordingSession(store);
    expect(store.getState().conversations[ALEX]?.unread).toBe(3);
    renderWith(store, session, <ChatPane peerId={ALEX} />);

    const line = screen.getByTestId("unread-divider");
    expect(line.textContent).toBe("3 unread messages");
    const next = line.nextElementSibling as HTMLElement;
    expect(within(next).getByTestId("message-text").textContent).toBe("four");
    expect(screen.getAllByTestId("unread-divider")).toHaveLength(1);

    // Opening marked them read; the line stays while the chat is open.
    expect(calls).toContain(`markRead ${ALEX}`);
    expect(store.getState().conversations[ALEX]?.unread).toBe(0);
    act(() => {
      peerMessage(store, ALEX, 7n, "seven");
    });
    expect(screen.getByTestId("unread-divider").textContent).toBe("3 unread messages");
  });

  it("is not there when nothing was unread, nor when the chat is opened again", () => {
    const store = conversationWithUnread();
    const { session } = recordingSession(store);
    const first = renderWith(store, session, <ChatPane peerId={ALEX} />);
    expect(screen.getByTestId("unread-divider")).toBeTruthy();
    first.unmount();

    renderWith(store, session, <ChatPane peerId={ALEX} />);
    expect(screen.queryByTestId("unread-divider")).toBeNull();
  });

  it("keeps the read position the chat opened with while its code is still loading", async () => {
    const store = conversationWithUnread();
    const { session } = recordingSession(store);
    renderWith(store, session, <LazyChatPane peerId={ALEX} />);
    // Opening marks everything read before the lazily loaded view appears (session.openPeer).
    act(() => {
      store.getState().markRead(ALEX);
    });
    const line = await screen.findByTestId("unread-divider");
    expect(line.textContent).toBe("3 unread messages");
  });
});

describe("a conversation for keyboards and screen readers", () => {
  it("is a polite log whose messages say who wrote them and when", () => {
    const store = conversationWithUnread();
    const { session } = recordingSession(store);
    renderWith(store, session, <ChatPane peerId={ALEX} />);

    const log = screen.getByRole("log");
    expect(log.getAttribute("aria-live")).toBe("polite");
    expect(log.getAttribute("aria-label")).toBe("Messages with Alex Brown");

    const peer = screen.getByTestId(`message-m-${ALEX}-4`);
    expect(within(peer).getByTestId("message-author").textContent).toBe("Alex Brown: ");
    const time = within(peer).getByTestId("message-time");
    expect(time.tagName).toBe("TIME");
    expect(peer.textContent).toMatch(/^Alex Brown: four/);
    expect(peer.textContent).toContain(time.textContent);
    const own = screen.getAllByTestId("message-author").find((el) => el.textContent === "You: ");
    expect(own).toBeTruthy();
  });

  it("gives each time a tab stop and its full date and time as a tooltip", async () => {
    // (That the tooltip also shows on keyboard focus needs :focus-visible, which jsdom lacks:
    // reading.e2e.test.mjs checks it in Chromium.)
    const store = conversationWithUnread();
    const { session } = recordingSession(store);
    renderWith(store, session, <ChatPane peerId={ALEX} />);
    const message = store.getState().conversations[ALEX]?.messages.find((m) => m.seq === 4n);
    const time = within(screen.getByTestId(`message-m-${ALEX}-4`)).getByTestId("message-time");
    expect(time.tabIndex).toBe(0);
    await userEvent.setup().hover(time);
    const tip = await screen.findByRole("tooltip");
    expect(tip.textContent).toBe(formatFullDateTime(message?.sentAt ?? new Date()));
  });

  it("moves focus to the composer when a chat opens", () => {
    const store = conversationWithUnread();
    const { session } = recordingSession(store);
    renderWith(store, session, <ChatPane peerId={ALEX} />);
    expect(document.activeElement).toBe(screen.getByTestId("composer-input"));
  });

  it("goes back on Escape on a phone, but lets Escape close an open tooltip first", async () => {
    const store = conversationWithUnread();
    const { session } = recordingSession(store);
    let backs = 0;
    const onBack = () => {
      backs += 1;
    };
    renderWith(store, session, <ChatPane peerId={ALEX} onBack={onBack} />);
    const user = userEvent.setup();

    // A tick's tooltip is open: Escape closes it and the chat stays.
    const own = store.getState().conversations[ALEX]?.messages.find((m) => m.own);
    await user.hover(screen.getByTestId(`status-${own?.key ?? ""}`));
    await screen.findByRole("tooltip");
    await user.keyboard("{Escape}");
    expect(backs).toBe(0);
    await waitFor(() => {
      expect(screen.queryByRole("tooltip")).toBeNull();
    });

    await user.keyboard("{Escape}");
    expect(backs).toBe(1);
  });

  it("has no Escape handler on wide screens (no way back to go)", async () => {
    const store = conversationWithUnread();
    const { session } = recordingSession(store);
    renderWith(store, session, <ChatPane peerId={ALEX} />);
    await userEvent.setup().keyboard("{Escape}");
    expect(screen.queryByTestId("back-button")).toBeNull();
  });
});

describe("links in messages", () => {
  it("open web addresses in a new tab without the opener, and keep markup as text", () => {
    render(
      <p data-testid="text">
        <MessageText
          text={'<img src=x onerror="alert(1)"> see https://example.com/a and javascript:alert(2)'}
        />
      </p>,
    );
    const p = screen.getByTestId("text");
    const links = within(p).getAllByRole("link");
    expect(links).toHaveLength(1);
    const link = links[0] as HTMLAnchorElement;
    expect(link.getAttribute("href")).toBe("https://example.com/a");
    expect(link.textContent).toBe("https://example.com/a");
    expect(link.target).toBe("_blank");
    expect(link.rel.split(" ").sort()).toEqual(["noopener", "noreferrer"]);
    // The markup stayed text: no element was made from it.
    expect(p.querySelector("img")).toBeNull();
    expect(p.textContent).toBe(
      '<img src=x onerror="alert(1)"> see https://example.com/a and javascript:alert(2)',
    );
  });
});

describe("status ticks", () => {
  const statuses: TickStatus[] = ["sending", "sent", "delivered", "read", "failed"];

  it("name themselves on the element with the role, take focus, and keep the test hooks", () => {
    for (const status of statuses) {
      const { unmount } = render(<StatusTick status={status} testId="tick" mode="light" />);
      const tick = screen.getByRole("img", { name: STATUS_LABEL[status] });
      expect(tick.dataset.testid).toBe("tick");
      expect(tick.dataset.status).toBe(status);
      expect(tick.tabIndex).toBe(0);
      expect(tick.querySelector("svg")?.getAttribute("aria-hidden")).toBe("true");
      unmount();
    }
    const { container } = render(<StatusTick status="received" testId="tick" mode="light" />);
    expect(container.textContent).toBe("");
  });

  it("differ by shape: one tick sent, two delivered, two on a filled disc read", () => {
    const drawing = (status: TickStatus) => {
      const { container, unmount } = render(
        <StatusTick status={status} testId="tick" mode="light" />,
      );
      const svg = container.querySelector("svg");
      const shape = {
        paths: svg?.querySelectorAll("path").length ?? 0,
        discs: svg?.querySelectorAll("circle").length ?? 0,
        d: [...(svg?.querySelectorAll("path") ?? [])].map((p) => p.getAttribute("d")).join(),
      };
      unmount();
      return shape;
    };
    const sent = drawing("sent");
    const delivered = drawing("delivered");
    const read = drawing("read");
    expect(sent.d).not.toBe(delivered.d);
    expect(delivered.discs).toBe(0);
    expect(read.discs).toBe(1);
    expect(read.d).toBe(delivered.d); // the same two ticks, cut out of a disc
    expect(drawing("sending").d).not.toBe(sent.d);
    expect(TICK_COLOR.light.read).not.toBe(TICK_COLOR.light.delivered);
  });

  it("have 3:1 contrast or better against the own bubble in both themes", () => {
    for (const mode of ["light", "dark"] as const) {
      const bubble = OWN_BUBBLE[mode].background;
      for (const status of statuses) {
        const ratio = contrastRatio(TICK_COLOR[mode][status], bubble);
        expect(ratio, `${mode} ${status} ${ratio.toFixed(2)}`).toBeGreaterThanOrEqual(3);
      }
    }
  });

  it("say their status in a tooltip", async () => {
    // (On keyboard focus too: reading.e2e.test.mjs, in Chromium, which has :focus-visible.)
    render(<StatusTick status="delivered" testId="tick" mode="light" />);
    await userEvent.setup().hover(screen.getByTestId("tick"));
    expect((await screen.findByRole("tooltip")).textContent).toBe("Delivered");
  });

  it("show each status a conversation has", () => {
    const store = storeAsMe();
    online(store, { [ALEX]: "Alex" });
    const read = ownMessage(store, ALEX, 1n, "read one");
    const delivered = ownMessage(store, ALEX, 2n, "delivered one");
    const sent = ownMessage(store, ALEX, 3n, "sent one");
    const sending = store.getState().queueMessage(ALEX, "still sending");
    peerStatus(store, ALEX, 2n, false);
    peerStatus(store, ALEX, 1n, true);
    const { session } = recordingSession(store);
    renderWith(store, session, <ChatPane peerId={ALEX} />, "dark");
    const expected: [string, MessageState][] = [
      [read, "read"],
      [delivered, "delivered"],
      [sent, "sent"],
      [sending, "sending"],
    ];
    for (const [id, status] of expected) {
      const tick = screen.getByTestId(`status-${id}`);
      expect(tick.dataset.status).toBe(status);
      expect(tick.getAttribute("aria-label")).toBe(STATUS_LABEL[status as TickStatus]);
    }
  });
});

describe("a refused message", () => {
  function failed(extra: Partial<UiMessage> & Record<string, unknown> = {}): UiMessage {
    return {
      key: "c1",
      messageId: "",
      clientMsgId: "c1",
      fromUserId: ME,
      toUserId: ALEX,
      text: "hello",
      seq: null,
      sentAt: new Date(),
      own: true,
      status: "failed",
      serverStatus: MessageStatus.UNSPECIFIED,
      error: {
        code: "INVALID_ARGUMENT",
        message: "messages to this person are not accepted while they have you blocked, sorry",
        retryAfterMs: 0,
        field: "",
      },
      ...extra,
    };
  }

  function bubble(message: UiMessage) {
    let retried = "";
    render(
      <MessageBubble
        message={message}
        author="You"
        onRetry={(id) => {
          retried = id;
        }}
      />,
    );
    return () => retried;
  }

  it("says why in full and offers Retry when nothing says it cannot succeed", async () => {
    const retried = bubble(failed());
    const reason = screen.getByTestId("refusal-c1");
    expect(reason.textContent).toContain(
      "The server refused it: messages to this person are not accepted while they have you blocked, sorry",
    );
    await userEvent.setup().click(screen.getByTestId("retry-c1"));
    expect(retried()).toBe("c1");
  });

  it("shows the store's own reason when it has one, and no Retry when it is not retryable", () => {
    bubble(failed({ reason: "Alex does not take messages from you.", retryable: false }));
    expect(screen.getByTestId("refusal-c1").textContent).toBe(
      "Alex does not take messages from you.",
    );
    expect(screen.queryByTestId("retry-c1")).toBeNull();
  });

  it("reads retryable from the refusal too, and offers Retry when it is true", () => {
    const base = failed();
    const error = base.error ? { ...base.error, retryable: false } : null;
    const { unmount } = render(
      <MessageBubble message={{ ...base, error }} author="You" onRetry={() => undefined} />,
    );
    expect(screen.queryByTestId("retry-c1")).toBeNull();
    unmount();
    bubble(failed({ retryable: true }));
    expect(screen.getByTestId("retry-c1")).toBeTruthy();
  });
});
