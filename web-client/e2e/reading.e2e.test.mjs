// End-to-end tests of reading a conversation, in headless Chromium against the real server: the
// unread line and where a chat opens, links that open in a new tab without a handle on the app,
// and an axe-core scan of the main screens in the light and the dark theme. Run them with
// `npm run build && npm run e2e`.
import { mkdirSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { AxeBuilder } from "@axe-core/playwright";
import {
  STEP_TIMEOUT_MS,
  openPerson,
  presenceOf,
  resultsDir,
  startEnvironment,
  until,
} from "./support.mjs";

let env;
let a;
let b;

before(async () => {
  env = await startEnvironment();
  a = await openPerson(env, "A");
  b = await openPerson(env, "B");
  await until("A sees B online", async () => (await presenceOf(a.page, b.userId)) === "online");
  await until("B sees A online", async () => (await presenceOf(b.page, a.userId)) === "online");
});

after(async () => {
  await env?.stop();
});

/** Opens `peerId`'s conversation in `page` and waits for its composer. */
async function openChat(page, peerId) {
  await page.getByTestId(`user-${peerId}`).click();
  await page.getByTestId("composer-input").waitFor({ timeout: STEP_TIMEOUT_MS });
}

/** Sends `text` from the open conversation and waits until the server took it (one tick). */
async function send(page, text) {
  const input = page.getByTestId("composer-input");
  await input.fill(text);
  await input.press("Enter");
  const bubble = page.locator('[data-own="true"]', {
    has: page.getByTestId("message-text").getByText(text, { exact: true }),
  });
  await until(`"${text.slice(0, 20)}…" is sent`, async () => {
    const status = await bubble.locator('[data-testid^="status-"]').getAttribute("data-status");
    return status === "sent" || status === "delivered" || status === "read";
  });
}

/** A message eight lines tall, so a few of them overflow the conversation. */
const tall = (label) => Array.from({ length: 8 }, (_, i) => `${label}, line ${i + 1}`).join("\n");

async function screenshot(page, name) {
  mkdirSync(resultsDir, { recursive: true });
  await page.screenshot({ path: path.join(resultsDir, `reading-${name}.png`) });
}

test("a chat with unread messages opens at an unread line above the first of them", async () => {
  // A writes to B first: messages A has, none of them unread for A.
  await openChat(a.page, b.userId);
  for (let i = 1; i <= 3; i += 1) await send(a.page, tall(`A's message ${i}`));
  // A closes the chat (a reload opens the app on the people list, same user).
  await a.page.reload();
  await a.page.getByTestId(`user-${b.userId}`).waitFor({ timeout: STEP_TIMEOUT_MS });

  // B answers with four messages: unread for A.
  await openChat(b.page, a.userId);
  for (let i = 1; i <= 4; i += 1) await send(b.page, tall(`B's answer ${i}`));
  await until(
    "A's list shows 4 unread from B",
    async () => (await a.page.getByTestId(`unread-${b.userId}`).getAttribute("data-count")) === "4",
  );

  await openChat(a.page, b.userId);
  const divider = a.page.getByTestId("unread-divider");
  await divider.waitFor({ timeout: STEP_TIMEOUT_MS });
  assert.equal((await divider.textContent())?.trim(), "4 unread messages");

  // The line sits right above B's first answer.
  const next = await divider.evaluate((el) => {
    const bubble = el.nextElementSibling;
    return bubble?.querySelector('[data-testid="message-text"]')?.textContent ?? "";
  });
  assert.equal(next, tall("B's answer 1"));

  // The conversation scrolled to it: the line is at the top of the view, not at the bottom.
  await until("the view settles on the unread line", async () => {
    const place = await a.page.getByTestId("message-list").evaluate((log) => {
      const line = log.querySelector('[data-testid="unread-divider"]');
      const top = line.getBoundingClientRect().top - log.getBoundingClientRect().top;
      const fromBottom = log.scrollHeight - log.scrollTop - log.clientHeight;
      return { top, fromBottom };
    });
    return place.top >= 0 && place.top < 40 && place.fromBottom > 100;
  });

  // Focus went to the composer.
  assert.equal(
    await a.page.evaluate(() => document.activeElement?.getAttribute("data-testid")),
    "composer-input",
  );

  // Opening marked them read (the badge goes), and the line stays while the chat is open.
  await until(
    "A's unread badge for B goes away",
    async () => (await a.page.getByTestId(`unread-${b.userId}`).count()) === 0,
  );
  await a.page.waitForTimeout(500);
  assert.equal(await divider.count(), 1);
  await screenshot(a.page, "unread-line");
});

test("a link in a message opens in a new tab that has no handle on the app", async () => {
  const target = `${env.server.url}/health`;
  await send(b.page, `status page: ${target} (and javascript:alert(1) is not a link)`);
  const link = a.page.getByTestId("message-link").filter({ hasText: target });
  await link.waitFor({ timeout: STEP_TIMEOUT_MS });
  assert.equal(await link.getAttribute("href"), target);
  assert.equal(await link.getAttribute("target"), "_blank");
  assert.deepEqual((await link.getAttribute("rel"))?.split(" ").sort(), ["noopener", "noreferrer"]);
  // Only the web address became a link.
  const bubble = a.page.locator('[data-own="false"]', { has: link });
  assert.equal(await bubble.getByRole("link").count(), 1);

  const [tab] = await Promise.all([
    a.context.waitForEvent("page", { timeout: STEP_TIMEOUT_MS }),
    link.click(),
  ]);
  await tab.waitForLoadState();
  assert.equal(tab.url(), target);
  assert.equal(await tab.evaluate(() => window.opener), null);
  await tab.close();
});

test("ticks and times show their tooltip on keyboard focus", async () => {
  const page = a.page;
  const own = page.locator('[data-own="true"]').last();
  const tick = own.locator('[data-testid^="status-"]');
  const time = own.getByTestId("message-time");
  // Keyboard focus: from the time, Tab to the tick (MUI shows tooltips on :focus-visible).
  await time.focus();
  await page.keyboard.press("Tab");
  assert.equal(await tick.evaluate((el) => el === document.activeElement), true);
  const tip = page.getByRole("tooltip");
  await until("the tick's tooltip shows", async () => (await tip.textContent()) === "Read");
  assert.equal(await tick.getAttribute("aria-label"), "Read");

  await page.keyboard.press("Shift+Tab");
  assert.equal(await time.evaluate((el) => el === document.activeElement), true);
  const iso = await time.getAttribute("datetime");
  const full = await page.evaluate(
    (at) => new Date(at).toLocaleString(undefined, { dateStyle: "full", timeStyle: "short" }),
    iso,
  );
  await until(
    "the time's tooltip shows the full date",
    async () => (await tip.textContent()) === full,
  );
  await page.keyboard.press("Escape");
  await until("Escape closes the tooltip", async () => (await tip.count()) === 0);
});

test("a short conversation sits just above the composer", async () => {
  const c = await openPerson(env, "C");
  await until("A sees C online", async () => (await presenceOf(a.page, c.userId)) === "online");
  await openChat(a.page, c.userId);
  await send(a.page, "Hello C");
  const gap = await a.page.getByTestId("message-list").evaluate((log) => {
    const bubbles = log.querySelectorAll('[data-testid^="message-"][data-own]');
    const last = bubbles[bubbles.length - 1];
    return log.getBoundingClientRect().bottom - last.getBoundingClientRect().bottom;
  });
  assert.ok(gap >= 0 && gap < 24, `the last message is ${gap} px above the composer`);
  await screenshot(a.page, "short-conversation");
  await c.context.close();
  // Back to B for the scans.
  await openChat(a.page, b.userId);
});

/** Serious and critical axe-core violations on the page as it is. */
async function seriousViolations(page, where) {
  const results = await new AxeBuilder({ page }).analyze();
  return results.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map(
      (v) =>
        `${where}: ${v.id} (${v.impact}) ${v.help}\n` +
        v.nodes.map((n) => `    ${n.target.join(" ")}: ${n.failureSummary}`).join("\n"),
    );
}

test("the main screens pass an axe-core scan in the light and the dark theme", async () => {
  const page = a.page;
  const problems = [];
  for (const colorScheme of ["light", "dark"]) {
    await page.emulateMedia({ colorScheme });
    await page.setViewportSize({ width: 1100, height: 700 });
    // The people list with a conversation open beside it: bubbles, ticks, a link, the line.
    await page.getByTestId("message-list").waitFor({ timeout: STEP_TIMEOUT_MS });
    await until(`the page shows the ${colorScheme} theme`, () =>
      page.evaluate(
        (dark) => (getComputedStyle(document.body).backgroundColor === "rgb(18, 20, 23)") === dark,
        colorScheme === "dark",
      ),
    );
    problems.push(...(await seriousViolations(page, `${colorScheme}, wide, chat open`)));
    await screenshot(page, `${colorScheme}-wide`);

    // Phone width: the chat covers the list; Escape goes back to the list.
    await page.setViewportSize({ width: 390, height: 760 });
    await page.getByTestId("back-button").waitFor({ timeout: STEP_TIMEOUT_MS });
    problems.push(...(await seriousViolations(page, `${colorScheme}, phone, chat open`)));
    await screenshot(page, `${colorScheme}-phone-chat`);
    await page.getByTestId("composer-input").focus();
    await page.keyboard.press("Escape");
    await page.getByTestId("user-list").waitFor({ timeout: STEP_TIMEOUT_MS });
    assert.equal(await page.getByTestId("back-button").count(), 0);
    problems.push(...(await seriousViolations(page, `${colorScheme}, phone, people list`)));
    await screenshot(page, `${colorScheme}-phone-list`);

    // Back to the wide layout with the chat open for the next theme.
    await page.setViewportSize({ width: 1100, height: 700 });
    await openChat(page, b.userId);
  }
  assert.deepEqual(problems, [], problems.join("\n"));
});
