import { describe, expect, it } from "vitest";
import { Backoff } from "./backoff";

describe("Backoff", () => {
  it("doubles the ceiling from 0.5 s and caps it at 30 s", () => {
    const b = new Backoff({ random: () => 0.999999 });
    const delays = Array.from({ length: 10 }, () => b.next());
    const ceilings = [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000];
    delays.forEach((d, i) => {
      const c = ceilings[i] as number;
      expect(d).toBeLessThanOrEqual(c);
      expect(d).toBeGreaterThanOrEqual(c - 1);
    });
    expect(b.ceiling(1000)).toBe(30000);
  });

  it("draws uniformly from 0 to the ceiling (full jitter)", () => {
    const values = [0, 0.5, 0.25, 0.75];
    let i = 0;
    const b = new Backoff({ random: () => values[i++ % values.length] as number });
    expect([b.next(), b.next(), b.next(), b.next()]).toEqual([0, 500, 500, 3000]);
  });

  it("stays within bounds for any random value", () => {
    let seed = 42;
    const lcg = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const b = new Backoff({ random: lcg });
    for (let n = 0; n < 200; n++) {
      const ceiling = b.ceiling();
      const d = b.next();
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThanOrEqual(Math.min(30000, ceiling));
    }
  });

  it("starts from the first ceiling again after reset", () => {
    const b = new Backoff({ random: () => 0.999999 });
    for (let n = 0; n < 8; n++) b.next();
    expect(b.attempt).toBe(8);
    b.reset();
    expect(b.attempt).toBe(0);
    expect(b.next()).toBeLessThanOrEqual(500);
  });

  it("refuses nonsense bounds", () => {
    expect(() => new Backoff({ baseMs: 0 })).toThrow(RangeError);
    expect(() => new Backoff({ baseMs: 100, maxMs: 50 })).toThrow(RangeError);
  });
});
