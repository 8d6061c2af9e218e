import { describe, expect, it } from "vitest";
import { describeError } from "./errors";
import { randomName } from "./names";

const err = (
  code: string,
  extra: { retryAfterMs?: number; field?: string; message?: string } = {},
) => ({
  code,
  message: extra.message ?? "",
  retryAfterMs: extra.retryAfterMs ?? 0,
  field: extra.field ?? "",
});

describe("describeError", () => {
  it("puts refusals in words", () => {
    expect(describeError(err("RATE_LIMITED", { retryAfterMs: 2500 }))).toBe(
      "Slow down: try again in 3 s.",
    );
    expect(describeError(err("INVALID_ARGUMENT", { field: "send_message.text" }))).toBe(
      "That message is empty or too long.",
    );
    expect(describeError(err("NOT_FOUND"))).toBe("That person is not known to the server.");
    expect(describeError(err("UNAVAILABLE"))).toBe("The server cannot be reached right now.");
    expect(describeError(err("DATA_LOSS", { message: "disk on fire" }))).toBe(
      "Something went wrong: disk on fire",
    );
  });
});

describe("randomName", () => {
  it("makes a friendly name from the random source", () => {
    expect(randomName(() => 0)).toBe("SwiftPanda0");
    expect(randomName(() => 0.999)).toMatch(/^[A-Z][a-z]+[A-Z][a-z]+99$/);
  });
});
