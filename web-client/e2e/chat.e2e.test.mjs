// End-to-end test: the real server binary (SQLite in a temporary directory) serving the built
// client, and headless Chromium (Debian's, through playwright-core) with one browser context per
// person. Run it with `npm run build && npm run e2e`; FASTCHAT_BIN names the server binary
// (default ../target/debug/fastchat) and CHROMIUM the browser (default /usr/bin/chromium).
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const webClientDir = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const serverBin = path.resolve(
  webClientDir,
  process.env.FASTCHAT_BIN ?? path.join("..", "target", "debug", "fastchat"),
);
const resultsDir = path.join(webClientDir, "test-results");

/** How long one step may take before it fails. */
const STEP_TIMEOUT_MS = 15_000;
/** Reconnecting waits for the client's backoff (full jitter, growing from 0.5 s). */
const RECONNECT_TIMEOUT_MS = 45_000;

/** A free TCP port on 127.0.0.1, picked by the kernel. */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => {
        resolve(typeof address === "object" && address ? address.port : 0);
      });
    });
  });
}

/** Polls `check` until it returns a truthy value; fails with `what` after `timeoutMs`. */
async function until(what, check, timeoutMs = STEP_TIMEOUT_MS) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
      last = value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting until ${what} (last: ${last})`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The server process: started, stopped and started again on the same port and data dir. */
class Server {
  constructor(port, dataDir) {
    this.port = port;
    this.dataDir = dataDir;
    this.child = null;
    this.log = "";
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start() {
    const child = spawn(
      serverBin,
      [
        "--listen",
        `127.0.0.1:${this.port}`,
        "--data-dir",
        this.dataDir,
        "--web-dir",
        path.join(webClientDir, "dist"),
        "--offline-grace-ms",
        "1000",
      ],
      { cwd: webClientDir, stdio: ["ignore", "pipe", "pipe"] },
    );
    this.child = child;
    const append = (chunk) => {
      this.log = (this.log + chunk.toString()).slice(-20_000);
    };
    child.stdout.on("data", append);
    child.stderr.on("data", append);
    let exited = null;
    child.once("exit", (code, signal) => {
      exited = `exited (code ${code}, signal ${signal})`;
    });
    child.once("error", (error) => {
      exited = `failed to start: ${error.message}`;
    });
    await until(
      `the server answers ${this.url}/health`,
      async () => {
        if (exited) throw new Error(`server ${exited}:\n${this.log}`);
        const response = await fetch(`${this.url}/health`);
        return response.ok;
      },
      30_000,
    );
  }

  async stop() {
    const child = this.child;
    this.child = null;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  }
}

let dataDir;
let server;
let browser;

before(async () => {
  dataDir = mkdtempSync(path.join(tmpdir(), "fastchat-e2e-"));
  server = new Server(await freePort(), dataDir);
  await server.start();
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--no-first-run",
    ],
  });
});

after(async () => {
  await browser?.close().catch(() => undefined);
  await server?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

/** Opens the app in a fresh browser context (one person) and returns the page and user id. */
async function openPerson(name) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 700 } });
  const page = await context.newPage();
  page.on("pageerror", (error) => {
    console.error(`[${name}] page error: ${error.message}`);
  });
  await page.goto(`${server.url}/`);
  await page.getByTestId("self-name").waitFor({ timeout: STEP_TIMEOUT_MS });
  const userId = await until(`${name} has a user id`, () =>
    page.evaluate(() => {
      const raw = window.sessionStorage.getItem("fastchat.self");
      return raw ? JSON.parse(raw).userId : "";
    }),
  );
  return { context, page, userId };
}

/** The data-presence of `peerId`'s row in `page`'s people list ("" when absent). */
async function presenceOf(page, peerId) {
  const row = page.getByTestId(`user-${peerId}`);
  if ((await row.count()) === 0) return "";
  return (await row.getAttribute("data-presence")) ?? "";
}

/** The bubbles in `page` with the given client_msg_id. */
function bubbles(page, clientMsgId) {
  return page.locator(`[data-client-msg-id="${clientMsgId}"]`);
}

/** The client_msg_id of the own bubble in `page` with exactly this text. */
async function ownMessageId(page, text) {
  const bubble = page.locator('[data-own="true"]', {
    has: page.getByTestId("message-text").getByText(text, { exact: true }),
  });
  await bubble.waitFor({ timeout: STEP_TIMEOUT_MS });
  return (await bubble.getAttribute("data-client-msg-id")) ?? "";
}

/** The data-status of the tick on the bubble with this client_msg_id in `page`. */
async function statusOf(page, clientMsgId) {
  const tick = bubbles(page, clientMsgId).locator('[data-testid^="status-"]');
  if ((await tick.count()) === 0) return "";
  return (await tick.getAttribute("data-status")) ?? "";
}

async function bannerCount(page) {
  return page.getByTestId("connection-banner").count();
}

test("two people chat through the real server, across a server restart", async () => {
  const a = await openPerson("A");
  const b = await openPerson("B");

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
