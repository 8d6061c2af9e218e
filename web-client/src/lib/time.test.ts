import { describe, expect, it } from "vitest";
import { formatClock, formatFullDateTime, listTime } from "./time";

describe("listTime", () => {
  const now = new Date(2025, 5, 12, 15, 0); // Thursday 12 June 2025, 15:00

  it("is the clock today, Yesterday, the weekday this week, else the date", () => {
    const today = new Date(2025, 5, 12, 9, 5);
    expect(listTime(today, now)).toBe(formatClock(today));
    expect(listTime(new Date(2025, 5, 11, 23, 59), now)).toBe("Yesterday");
    const monday = new Date(2025, 5, 9, 12, 0);
    expect(listTime(monday, now)).toBe(monday.toLocaleDateString(undefined, { weekday: "short" }));
    const older = new Date(2025, 4, 1, 12, 0);
    expect(listTime(older, now)).toBe(
      older.toLocaleDateString(undefined, { day: "numeric", month: "short" }),
    );
    const lastYear = new Date(2024, 11, 24, 12, 0);
    expect(listTime(lastYear, now)).toContain("2024");
  });
});

describe("formatFullDateTime", () => {
  it("has the weekday, the year and the clock, in the user's locale", () => {
    const date = new Date(2025, 5, 12, 9, 5);
    const full = formatFullDateTime(date);
    expect(full).toContain("2025");
    expect(full).toContain(date.toLocaleDateString(undefined, { weekday: "long" }));
    expect(full).toBe(date.toLocaleString(undefined, { dateStyle: "full", timeStyle: "short" }));
  });
});
