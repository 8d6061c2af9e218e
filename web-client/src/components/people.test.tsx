// @vitest-environment jsdom
/**
 * The first screen: the people list as one Tab stop (roving tabindex), avatars and last-message
 * times, the unread total beside the title, and the connection bar's grace period.
 */
import { act, cleanup, render, screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import type { ReactNode } from "react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { avatarColors, initials } from "../lib/avatar";
import { listTime } from "../lib/time";
import type { ChatStore } from "../store/chat";
import { ME, online, peerMessage, recordingSession, storeAsMe } from "../test/fixtures";
import { AppTitle } from "./AppTitle";
import { ChatProvider, type SessionApi } from "./ChatContext";
import { ChatPane } from "./ChatPane";
import { CONNECTING_GRACE_MS, ConnectionBanner } from "./ConnectionBanner";
import { UserList } from "./UserList";

afterEach(() => {
  cleanup();
  vi.useRealTimers();
});

const ALEX = "alex-0002";
const BEA = "bea-0003";
const CARL = "carl-0004";

function renderWith(store: ChatStore, session: SessionApi, node: ReactNode) {
  return render(
    <ChatProvider store={store} session={session}>
      {node}
    </ChatProvider>,
  );
}

function threePeople() {
  const store = storeAsMe();
  online(store, { [ALEX]: "Alex Brown", [BEA]: "Bea", [CARL]: "Carl" });
  const { session, calls } = recordingSession(store);
  return { store, session, calls };
}

describe("the people list", () => {
  it("is one Tab stop, with the arrow keys, Home and End inside", async () => {
    const { store, session, calls } = threePeople();
    renderWith(
      store,
      session,
      <>
        <button type="button">before</button>
        <UserList onSelect={(id) => void session.openPeer(id)} />
        <button type="button">after</button>
      </>,
    );
    const rows = screen.getAllByRole("option");
    expect(rows).toHaveLength(3);
    const stops = () => rows.filter((r) => r.tabIndex === 0);
    expect(stops()).toEqual([rows[0]]);

    const user = userEvent.setup();
    await user.tab();
    await user.tab();
    expect(document.activeElement).toBe(rows[0]);
    await user.keyboard("{ArrowDown}");
    expect(document.activeElement).toBe(rows[1]);
    expect(stops()).toEqual([rows[1]]);
    await user.keyboard("{End}");
    expect(document.activeElement).toBe(rows[2]);
    await user.keyboard("{ArrowDown}");
    expect(document.activeElement).toBe(rows[2]);
    await user.keyboard("{Home}");
    expect(document.activeElement).toBe(rows[0]);
    await user.keyboard("{ArrowUp}");
    expect(document.activeElement).toBe(rows[0]);
    await user.keyboard("{ArrowDown}");

    // Tab leaves the list in one step; Shift+Tab comes back to the row that had focus.
    await user.tab();
    expect(document.activeElement?.textContent).toBe("after");
    await user.tab({ shift: true });
    expect(document.activeElement).toBe(rows[1]);

    // Enter and Space open the row.
    await user.keyboard("{Enter}");
    expect(calls).toContain(`open ${rows[1]?.dataset.userId ?? "?"}`);
    await user.keyboard("{ArrowUp}{ }");
    expect(calls).toContain(`open ${rows[0]?.dataset.userId ?? "?"}`);
    expect(rows[0]?.getAttribute("aria-selected")).toBe("true");
  });

  it("gives the Tab stop to the open conversation's row when none had focus", () => {
    const { store, session } = threePeople();
    store.getState().setOpenPeer(CARL);
    renderWith(store, session, <UserList onSelect={() => undefined} />);
    const carl = screen.getByTestId(`user-${CARL}`);
    expect(carl.tabIndex).toBe(0);
    expect(screen.getAllByRole("option").filter((r) => r.tabIndex === 0)).toEqual([carl]);
  });

  it("shows the last message's time and the unread count in words for readers", () => {
    const { store, session } = threePeople();
    const at = new Date();
    peerMessage(store, BEA, 1n, "hi", at);
    peerMessage(store, BEA, 2n, "there", at);
    renderWith(store, session, <UserList onSelect={() => undefined} />);
    const time = screen.getByTestId(`last-time-${BEA}`);
    expect(time.textContent).toBe(listTime(at));
    expect(time.getAttribute("dateTime")).toBe(at.toISOString());
    expect(screen.queryByTestId(`last-time-${ALEX}`)).toBeNull();
    expect(screen.getByTestId(`unread-${BEA}`).textContent).toBe("22 unread messages");
    expect(screen.getByTestId(`user-${BEA}`).textContent).toContain("2 unread messages");
  });

  it("uses the same initials and colour for a person in the list and the chat header", () => {
    const { store, session } = threePeople();
    renderWith(
      store,
      session,
      <>
        <UserList onSelect={() => undefined} />
        <ChatPane peerId={ALEX} />
      </>,
    );
    const avatars = screen.getAllByTestId(`avatar-${ALEX}`);
    expect(avatars).toHaveLength(2);
    const expected = avatarColors(ALEX, "light");
    for (const avatar of avatars) {
      expect(avatar.textContent).toBe(initials("Alex Brown"));
      expect(avatar.textContent).toBe("AB");
      const circle = avatar.firstElementChild as HTMLElement;
      expect(getComputedStyle(circle).backgroundColor).toBe(hexToRgb(expected.background));
    }
  });
});

function hexToRgb(hex: string): string {
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  return `rgb(${r}, ${g}, ${b})`;
}

describe("the title's unread total", () => {
  it("stands beside the title, not over it, and counts only others' messages", () => {
    const store = storeAsMe();
    const { session } = recordingSession(store);
    renderWith(store, session, <AppTitle />);
    expect(screen.queryByTestId("total-unread")).toBeNull();
    act(() => {
      peerMessage(store, ALEX, 1n, "one");
      peerMessage(store, BEA, 2n, "two");
      peerMessage(store, BEA, 3n, "three");
    });
    const badge = screen.getByTestId("total-unread");
    const title = screen.getByRole("heading", { level: 1 });
    expect(title.textContent).toBe("FastChat");
    expect(title.contains(badge)).toBe(false);
    expect(badge.dataset.count).toBe("3");
    expect(badge.textContent).toBe("33 unread messages");
    expect(store.getState().self.userId).toBe(ME);
  });
});

describe("the connection bar", () => {
  it("waits out a grace period before saying it is connecting, but not a lost connection", () => {
    vi.useFakeTimers();
    const store = storeAsMe();
    const { session } = recordingSession(store);
    store.getState().setConnection({ kind: "connecting", attempt: 0 });
    renderWith(store, session, <ConnectionBanner />);
    expect(screen.queryByTestId("connection-banner")).toBeNull();
    act(() => {
      vi.advanceTimersByTime(CONNECTING_GRACE_MS - 100);
    });
    expect(screen.queryByTestId("connection-banner")).toBeNull();
    act(() => {
      vi.advanceTimersByTime(200);
    });
    expect(screen.getByTestId("connection-banner").dataset.state).toBe("connecting");

    act(() => {
      store.getState().setConnection({ kind: "online", since: Date.now() });
    });
    expect(screen.queryByTestId("connection-banner")).toBeNull();
    act(() => {
      store.getState().setConnection({
        kind: "reconnecting",
        attempt: 1,
        retryAt: Date.now() + 5000,
        reason: "",
      });
    });
    expect(screen.getByTestId("connection-banner").dataset.state).toBe("reconnecting");
  });
});
