import { describe, expect, it } from "vitest";
import { rovingTarget, tabStopId } from "./roving";

describe("rovingTarget", () => {
  it("moves with the arrows, stopping at the ends, and jumps with Home and End", () => {
    expect(rovingTarget("ArrowDown", 0, 3)).toBe(1);
    expect(rovingTarget("ArrowDown", 2, 3)).toBe(2);
    expect(rovingTarget("ArrowUp", 2, 3)).toBe(1);
    expect(rovingTarget("ArrowUp", 0, 3)).toBe(0);
    expect(rovingTarget("Home", 2, 3)).toBe(0);
    expect(rovingTarget("End", 0, 3)).toBe(2);
  });

  it("starts from the first row when none has focus, and ignores other keys", () => {
    expect(rovingTarget("ArrowDown", -1, 3)).toBe(1);
    expect(rovingTarget("ArrowUp", -1, 3)).toBe(0);
    expect(rovingTarget("a", 0, 3)).toBeNull();
    expect(rovingTarget("Tab", 0, 3)).toBeNull();
    expect(rovingTarget("ArrowDown", 0, 0)).toBeNull();
  });
});

describe("tabStopId", () => {
  const ids = ["a", "b", "c"];
  it("is the row last focused, else the selected one, else the first", () => {
    expect(tabStopId(ids, "c", "b")).toBe("c");
    expect(tabStopId(ids, null, "b")).toBe("b");
    expect(tabStopId(ids, "gone", "b")).toBe("b");
    expect(tabStopId(ids, "gone", "gone too")).toBe("a");
    expect(tabStopId([], null, null)).toBeNull();
  });
});
