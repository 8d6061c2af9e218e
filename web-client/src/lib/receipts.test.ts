import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Backoff } from "./backoff";
import { ReceiptSender } from "./receipts";

/** A send whose calls the test answers by hand. */
function manualSend() {
  const calls: { upTo: bigint; resolve: () => void; reject: (e: unknown) => void }[] = [];
  const send = (upTo: bigint) =>
    new Promise<void>((resolve, reject) => {
      calls.push({ upTo, resolve, reject });
    });
  return { send, calls, seqs: () => calls.map((c) => c.upTo) };
}

/** Lets the promise callbacks run (fake timers do not hold them back). */
const settle = () => vi.advanceTimersByTimeAsync(0);

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

describe("receipt sender", () => {
  it("sends one receipt per burst, for the newest seq, after the pause", async () => {
    const s = manualSend();
    const receipts = new ReceiptSender({ window: 100, send: s.send, delayMs: 150 });
    for (const seq of [3n, 4n, 7n]) receipts.received(seq);
    await vi.advanceTimersByTimeAsync(149);
    expect(s.seqs()).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(s.seqs()).toEqual([7n]);
    s.calls[0]?.resolve();
    await settle();
    expect(receipts.acknowledged).toBe(7n);

    // The pause runs from the first message of a burst: a steady trickle is not put off.
    receipts.received(8n);
    await vi.advanceTimersByTimeAsync(100);
    receipts.received(9n);
    await vi.advanceTimersByTimeAsync(50);
    expect(s.seqs()).toEqual([7n, 9n]);
    s.calls[1]?.resolve();
    await vi.advanceTimersByTimeAsync(1_000);
    expect(s.seqs()).toEqual([7n, 9n]); // nothing new: nothing sent
  });

  it("sends at once when half the window is unacknowledged", () => {
    const s = manualSend();
    const receipts = new ReceiptSender({ window: 4, send: s.send, delayMs: 60_000 });
    receipts.received(1n);
    expect(s.seqs()).toEqual([]);
    receipts.received(2n);
    expect(s.seqs()).toEqual([2n]); // no pause

    // A window of 1 acknowledges every message at once.
    const t = manualSend();
    const single = new ReceiptSender({ window: 1, send: t.send, delayMs: 60_000 });
    single.received(5n);
    expect(t.seqs()).toEqual([5n]);
  });

  it("keeps one receipt in flight; what arrives meanwhile goes in the next, newest seq", async () => {
    const s = manualSend();
    const receipts = new ReceiptSender({ window: 4, send: s.send, delayMs: 150 });
    receipts.received(1n);
    receipts.received(2n);
    expect(s.seqs()).toEqual([2n]);
    for (const seq of [3n, 4n, 5n, 6n]) receipts.received(seq);
    await vi.advanceTimersByTimeAsync(500); // the pause runs out while the first is in flight
    expect(s.seqs()).toEqual([2n]);
    s.calls[0]?.resolve();
    await settle();
    expect(s.seqs()).toEqual([2n, 6n]);
    expect(receipts.acknowledged).toBe(2n);
    s.calls[1]?.resolve();
    await settle();
    expect(receipts.acknowledged).toBe(6n);
  });

  it("after a failure sends again after a backoff, covering what came since", async () => {
    const s = manualSend();
    const backoff = new Backoff({ baseMs: 1_000, maxMs: 1_000, random: () => 0.5 });
    const receipts = new ReceiptSender({ window: 4, send: s.send, delayMs: 150, backoff });
    receipts.received(1n);
    receipts.received(2n);
    s.calls[0]?.reject(new Error("unavailable"));
    await settle();
    receipts.received(3n);
    receipts.received(4n); // past half the window, but the backoff is not cut short
    await vi.advanceTimersByTimeAsync(499);
    expect(s.seqs()).toEqual([2n]);
    await vi.advanceTimersByTimeAsync(1);
    expect(s.seqs()).toEqual([2n, 4n]);
    s.calls[1]?.resolve();
    await settle();
    expect(receipts.acknowledged).toBe(4n);
    expect(backoff.attempt).toBe(0);
  });

  it("stops for good on a refusal that will not change, and after close()", async () => {
    const s = manualSend();
    const receipts = new ReceiptSender({
      window: 2,
      send: s.send,
      retryable: (e) => e !== "gone",
    });
    receipts.received(1n);
    s.calls[0]?.reject("gone");
    await settle();
    expect(receipts.stopped).toBe(true);
    receipts.received(2n);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(s.seqs()).toEqual([1n]);

    const t = manualSend();
    const closing = new ReceiptSender({ window: 100, send: t.send });
    closing.received(1n);
    closing.close();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(t.seqs()).toEqual([]);
  });
});
