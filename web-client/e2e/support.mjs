// What the end-to-end tests share: the real server binary (SQLite in a temporary directory)
// serving the built client, headless Chromium (Debian's, through playwright-core), and helpers
// that read the page. FASTCHAT_BIN names the server binary (default ../target/debug/fastchat) and
// CHROMIUM the browser (default /usr/bin/chromium).
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const webClientDir = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const serverBin = path.resolve(
  webClientDir,
  process.env.FASTCHAT_BIN ?? path.join("..", "target", "debug", "fastchat"),
);
export const resultsDir = path.join(webClientDir, "test-results");

/** How long one step may take before it fails. */
export const STEP_TIMEOUT_MS = 15_000;
/** Reconnecting waits for the client's backoff (full jitter, growing from 0.5 s). */
export const RECONNECT_TIMEOUT_MS = 45_000;

/** A free TCP port on 127.0.0.1, picked by the kernel. */
export function freePort() {
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
export async function until(what, check, timeoutMs = STEP_TIMEOUT_MS) {
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
export class Server {
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

/**
 * Starts a server on a fresh data dir and a headless Chromium; `stop()` ends both and removes the
 * data dir. Call it in `before` and `stop` in `after`.
 */
export async function startEnvironment() {
  const dataDir = mkdtempSync(path.join(tmpdir(), "fastchat-e2e-"));
  const server = new Server(await freePort(), dataDir);
  await server.start();
  const browser = await chromium.launch({
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
  const stop = async () => {
    await browser.close().catch(() => undefined);
    await server.stop();
    rmSync(dataDir, { recursive: true, force: true });
  };
  return { server, browser, stop };
}

/** Opens the app in a fresh browser context (one person) and returns the page and user id. */
export async function openPerson({ browser, server }, name) {
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
export async function presenceOf(page, peerId) {
  const row = page.getByTestId(`user-${peerId}`);
  if ((await row.count()) === 0) return "";
  return (await row.getAttribute("data-presence")) ?? "";
}

/** The bubbles in `page` with the given client_msg_id. */
export function bubbles(page, clientMsgId) {
  return page.locator(`[data-client-msg-id="${clientMsgId}"]`);
}

/** The client_msg_id of the own bubble in `page` with exactly this text. */
export async function ownMessageId(page, text) {
  const bubble = page.locator('[data-own="true"]', {
    has: page.getByTestId("message-text").getByText(text, { exact: true }),
  });
  await bubble.waitFor({ timeout: STEP_TIMEOUT_MS });
  return (await bubble.getAttribute("data-client-msg-id")) ?? "";
}

/** The data-status of the tick on the bubble with this client_msg_id in `page`. */
export async function statusOf(page, clientMsgId) {
  const tick = bubbles(page, clientMsgId).locator('[data-testid^="status-"]');
  if ((await tick.count()) === 0) return "";
  return (await tick.getAttribute("data-status")) ?? "";
}

export async function bannerCount(page) {
  return page.getByTestId("connection-banner").count();
}
