import { describe, expect, it } from "vitest";
import { createTypingThrottle } from "./typingThrottle";

function setup() {
  let t = 1_000_000;
  const sent: boolean[] = [];
  const throttle = createTypingThrottle((v) => sent.push(v), { now: () => t });
  return {
    throttle,
    sent,
    advance: (ms: number) => {
      t += ms;
    },
  };
}

describe("typing throttle", () => {
  it("sends at most one true per 2 s while typing", () => {
    const { throttle, sent, advance } = setup();
    for (let i = 0; i < 50; i++) {
      throttle.input();
      advance(100); // 50 keystrokes over 5 s
    }
    // true at 0 s, 2 s and 4 s
    expect(sent).toEqual([true, true, true]);
    expect(throttle.active).toBe(true);
  });

  it("sends true again exactly when 2 s have passed", () => {
    const { throttle, sent, advance } = setup();
    throttle.input();
    advance(1999);
    throttle.input();
    expect(sent).toEqual([true]);
    advance(1);
    throttle.input();
    expect(sent).toEqual([true, true]);
  });

  it("stop sends false once, and only after typing", () => {
    const { throttle, sent } = setup();
    throttle.stop();
    expect(sent).toEqual([]);
    throttle.input();
    throttle.stop();
    throttle.stop();
    expect(sent).toEqual([true, false]);
    expect(throttle.active).toBe(false);
  });

  it("typing right after a stop starts again at once", () => {
    const { throttle, sent, advance } = setup();
    throttle.input();
    advance(300);
    throttle.stop();
    advance(300);
    throttle.input();
    expect(sent).toEqual([true, false, true]);
  });
});
