// End-to-end test: two people chat through the real server and a server restart, in headless
// Chromium with one browser context per person. Run it with `npm run build && npm run e2e`.
import { mkdirSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import {
  RECONNECT_TIMEOUT_MS,
  STEP_TIMEOUT_MS,
  bannerCount,
  bubbles,
  openPerson,
  ownMessageId,
  presenceOf,
  resultsDir,
  startEnvironment,
  statusOf,
  until,
} from "./support.mjs";

let env;
let server;

before(async () => {
  env = await startEnvironment();
  server = env.server;
});

after(async () => {
  await env?.stop();
});

test("two people chat through the real server, across a server restart", async () => {
  const a = await openPerson(env, "A");
  const b = await openPerson(env, "B");

  // Both appear online to each other.
  await until("A sees B online", async () => (await presenceOf(a.page, b.userId)) === "online");
  await until("B sees A online", async () => (await presenceOf(b.page, a.userId)) === "online");

  // A opens B and starts typing: B sees the typing indicator while nothing has been sent yet.
  await a.page.getByTestId(`user-${b.userId}`).click();
  const input = a.page.getByTestId("composer-input");
  await input.waitFor({ timeout: STEP_TIMEOUT_MS });
  const first = "Hello B, this is A";
  await input.pressSequentially(first, { delay: 10 });
  await until("B sees A typing in the people list", async () =>
    /typing/i.test(await b.page.getByTestId(`user-${a.userId}`).innerText()),
  );
  if ((await b.page.locator("[data-client-msg-id]").count()) !== 0) {
    throw new Error("B got a message before A sent one");
  }

  // A sends: B sees it (preview and unread badge in the list), A's tick reaches delivered.
  await input.press("Enter");
  const firstId = await ownMessageId(a.page, first);
  await until("B's list shows the message and an unread badge", async () => {
    const row = await b.page.getByTestId(`user-${a.userId}`).innerText();
    return row.includes(first) && (await b.page.getByTestId(`unread-${a.userId}`).count()) === 1;
  });
  await until(
    "A's tick turns delivered",
    async () => (await statusOf(a.page, firstId)) === "delivered",
  );

  // B opens the conversation: the bubble is there once and A's tick turns to read.
  await b.page.getByTestId(`user-${a.userId}`).click();
  await bubbles(b.page, firstId).waitFor({ timeout: STEP_TIMEOUT_MS });
  await until("A's tick turns read", async () => (await statusOf(a.page, firstId)) === "read");
  await until(
    "B's unread badge goes away",
    async () => (await b.page.getByTestId(`unread-${a.userId}`).count()) === 0,
  );

  // With the conversation open, B sees the typing indicator in the chat itself.
  await input.pressSequentially("still ", { delay: 10 });
  await b.page.getByTestId("typing-indicator").waitFor({ timeout: STEP_TIMEOUT_MS });
  await input.fill("");

  // B closes the page: A sees B offline once the 1 s grace period is over.
  const bIdentity = await b.page.evaluate(() => window.sessionStorage.getItem("fastchat.self"));
  await b.page.close();
  await until("A sees B offline", async () => (await presenceOf(a.page, b.userId)) === "offline");

  // B comes back in a new tab with the same identity (a reload keeps sessionStorage; a new tab
  // gets it here from an init script): A sees B online again, and B reopens the conversation.
  await b.context.addInitScript((raw) => {
    window.sessionStorage.setItem("fastchat.self", raw);
  }, bIdentity);
  b.page = await b.context.newPage();
  await b.page.goto(`${server.url}/`);
  await until(
    "A sees B online again",
    async () => (await presenceOf(a.page, b.userId)) === "online",
  );
  await b.page.getByTestId(`user-${a.userId}`).click();
  await bubbles(b.page, firstId).waitFor({ timeout: STEP_TIMEOUT_MS });

  // The server stops: both pages say so.
  await server.stop();
  await until("A shows the connection banner", async () => (await bannerCount(a.page)) === 1);
  await until("B shows the connection banner", async () => (await bannerCount(b.page)) === 1);

  // A writes while the server is down: the message waits in the queue as "sending".
  const queued = "Written while the server was down";
  await input.fill(queued);
  await input.press("Enter");
  const queuedId = await ownMessageId(a.page, queued);
  if ((await statusOf(a.page, queuedId)) !== "sending") {
    throw new Error(`queued message shows ${await statusOf(a.page, queuedId)}, not sending`);
  }

  // The server comes back on the same port and data dir: both pages reconnect by themselves.
  await server.start();
  await until(
    "A reconnects (banner gone)",
    async () => (await bannerCount(a.page)) === 0,
    RECONNECT_TIMEOUT_MS,
  );
  await until(
    "B reconnects (banner gone)",
    async () => (await bannerCount(b.page)) === 0,
    RECONNECT_TIMEOUT_MS,
  );

  // The queued message is delivered exactly once; B has the chat open, so it ends up read.
  await bubbles(b.page, queuedId).first().waitFor({ timeout: STEP_TIMEOUT_MS });
  await until(
    "A's queued message turns read",
    async () => (await statusOf(a.page, queuedId)) === "read",
  );
  const countOn = async (page) =>
    page.getByTestId("message-text").getByText(queued, { exact: true }).count();
  for (const [who, page] of [
    ["A", a.page],
    ["B", b.page],
  ]) {
    const byId = await bubbles(page, queuedId).count();
    const byText = await countOn(page);
    if (byId !== 1 || byText !== 1) {
      throw new Error(`${who} shows the queued message ${byId} times by id, ${byText} by text`);
    }
  }
  // The first message is still there once on both sides after the refresh.
  for (const page of [a.page, b.page]) {
    if ((await bubbles(page, firstId).count()) !== 1) {
      throw new Error("the first message is not shown exactly once after the reconnect");
    }
  }

  mkdirSync(resultsDir, { recursive: true });
  await a.page.screenshot({ path: path.join(resultsDir, "e2e-person-a.png") });
  await b.page.screenshot({ path: path.join(resultsDir, "e2e-person-b.png") });
});
