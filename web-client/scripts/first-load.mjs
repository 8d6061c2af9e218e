// Measures the web client's first load in headless Chromium against the real server: the
// JavaScript the page loads before its load event (gzipped, as the server sends it to browsers
// that take gzip, and as transferred), first paint and first contentful paint, when the people
// list shows, and the layout shift (CLS) of the first seconds. Each run starts a fresh server (a
// new SQLite directory) and a fresh browser (an empty cache), and waits the connection bar's
// grace period out before it reads CLS.
//
//   node scripts/first-load.mjs [--web-dir dist] [--runs 5] [--throttle] [--json]
//
// FASTCHAT_BIN names the server binary (default ../target/debug/fastchat), CHROMIUM the browser
// (default /usr/bin/chromium). --web-dir is a built client (`npm run build`; an older commit's
// build to compare with). --throttle loads over an emulated slow link (1.6 Mbit/s down,
// 750 kbit/s up, 150 ms round trip, as Lighthouse's "slow 4G") with the CPU slowed 4 times.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { gzipSync } from "node:zlib";
import { chromium } from "playwright-core";

const webClientDir = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const { values: args } = parseArgs({
  options: {
    "web-dir": { type: "string", default: path.join(webClientDir, "dist") },
    runs: { type: "string", default: "5" },
    throttle: { type: "boolean", default: false },
    json: { type: "boolean", default: false },
  },
});
const webDir = path.resolve(args["web-dir"]);
const runs = Number(args.runs);
const serverBin = path.resolve(
  webClientDir,
  process.env.FASTCHAT_BIN ?? path.join("..", "target", "debug", "fastchat"),
);
/** Time after the people list shows for late shifts (the connection bar waits 2 s). */
const SETTLE_MS = 3000;

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function startServer() {
  const port = await freePort();
  const dataDir = mkdtempSync(path.join(tmpdir(), "fastchat-first-load-"));
  const child = spawn(
    serverBin,
    ["--listen", `127.0.0.1:${port}`, "--data-dir", dataDir, "--web-dir", webDir],
    { stdio: "ignore" },
  );
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      if ((await fetch(`${url}/health`)).ok) break;
    } catch {
      // not up yet
    }
    if (child.exitCode !== null || Date.now() > deadline) {
      throw new Error(`the server at ${serverBin} did not start`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const stop = async () => {
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGTERM");
    await exited;
    rmSync(dataDir, { recursive: true, force: true });
  };
  return { url, stop };
}

/** The size of a served file gzipped: its .gz copy (what the server sends), else gzip -9. */
function gzippedSize(urlPath) {
  const file = path.join(webDir, decodeURIComponent(urlPath));
  if (existsSync(`${file}.gz`)) return statSync(`${file}.gz`).size;
  return gzipSync(readFileSync(file), { level: 9 }).length;
}

// Runs in the page before its own scripts: layout shifts, and when the people list appears.
function observe() {
  window.__firstLoad = { cls: 0, shifts: [], listAt: null };
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      if (entry.hadRecentInput) continue;
      window.__firstLoad.cls += entry.value;
      window.__firstLoad.shifts.push({ at: Math.round(entry.startTime), value: entry.value });
    }
  }).observe({ type: "layout-shift", buffered: true });
  const seen = () =>
    document.querySelector('[data-testid="user-list"], [data-testid="user-list-empty"]');
  new MutationObserver((_records, observer) => {
    if (window.__firstLoad.listAt === null && seen()) {
      window.__firstLoad.listAt = performance.now();
      observer.disconnect();
    }
  }).observe(document, { childList: true, subtree: true });
}

async function measureOnce() {
  const server = await startServer();
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1100, height: 700 } });
    const page = await context.newPage();
    if (args.throttle) {
      const cdp = await context.newCDPSession(page);
      await cdp.send("Network.enable");
      await cdp.send("Network.emulateNetworkConditions", {
        offline: false,
        latency: 150,
        downloadThroughput: (1.6 * 1024 * 1024) / 8,
        uploadThroughput: (750 * 1024) / 8,
      });
      await cdp.send("Emulation.setCPUThrottlingRate", { rate: 4 });
    }
    await page.addInitScript(observe);
    await page.goto(`${server.url}/`, { waitUntil: "load" });
    await page.waitForFunction(() => window.__firstLoad.listAt !== null, null, {
      timeout: 60_000,
    });
    await page.waitForTimeout(SETTLE_MS);
    const found = await page.evaluate(() => {
      const nav = performance.getEntriesByType("navigation")[0];
      const paint = (name) => performance.getEntriesByName(name)[0]?.startTime ?? null;
      return {
        loadEventStart: nav.loadEventStart,
        firstPaint: paint("first-paint"),
        fcp: paint("first-contentful-paint"),
        listAt: window.__firstLoad.listAt,
        cls: window.__firstLoad.cls,
        shifts: window.__firstLoad.shifts,
        scripts: performance
          .getEntriesByType("resource")
          .filter((e) => new URL(e.name).pathname.endsWith(".js"))
          .map((e) => ({
            path: new URL(e.name).pathname,
            start: e.startTime,
            transferred: e.encodedBodySize,
          })),
      };
    });
    const first = found.scripts.filter((s) => s.start < found.loadEventStart);
    const later = found.scripts.filter((s) => s.start >= found.loadEventStart);
    const sum = (list, f) => list.reduce((total, s) => total + f(s), 0);
    return {
      jsGzip: sum(first, (s) => gzippedSize(s.path)),
      jsTransferred: sum(first, (s) => s.transferred),
      jsFiles: first.length,
      laterJsGzip: sum(later, (s) => gzippedSize(s.path)),
      firstPaint: found.firstPaint,
      fcp: found.fcp,
      listAt: found.listAt,
      cls: found.cls,
      shifts: found.shifts,
    };
  } finally {
    await browser.close();
    await server.stop();
  }
}

function stats(values) {
  const sorted = [...values].sort((x, y) => x - y);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { median, min: sorted[0], max: sorted[sorted.length - 1] };
}

const results = [];
for (let i = 0; i < runs; i += 1) results.push(await measureOnce());

const kb = (bytes) => (bytes / 1000).toFixed(1);
const ms = (value) => value.toFixed(0);
const row = (name, key, format, unit) => {
  const { median, min, max } = stats(results.map((r) => r[key]));
  return `| ${name} | ${format(median)} ${unit} | ${format(min)} – ${format(max)} |`;
};
const summary = [
  `${webDir}, ${runs} runs${args.throttle ? ", throttled (slow 4G, CPU / 4)" : ""}`,
  "",
  "| measure | median | range |",
  "|---|---|---|",
  row("first-load JavaScript, gzipped", "jsGzip", kb, "kB"),
  row("first-load JavaScript, as transferred (brotli)", "jsTransferred", kb, "kB"),
  row("JavaScript files before the load event", "jsFiles", String, ""),
  row("JavaScript fetched after the load event (idle prefetch), gzipped", "laterJsGzip", kb, "kB"),
  row("first paint", "firstPaint", ms, "ms"),
  row("first contentful paint", "fcp", ms, "ms"),
  row("people list shown", "listAt", ms, "ms"),
  row("cumulative layout shift", "cls", (v) => v.toFixed(3), ""),
].join("\n");
console.log(args.json ? JSON.stringify({ webDir, throttle: args.throttle, results }) : summary);
