import { describe, expect, it } from "vitest";
import { safeHref, splitLinks } from "./links";

const joined = (text: string) =>
  splitLinks(text)
    .map((p) => p.text)
    .join("");

describe("splitLinks", () => {
  it("finds http and https links, leaving the punctuation around them as text", () => {
    const text = "See https://example.com/a?b=1#c, and (http://example.org/x).";
    expect(splitLinks(text)).toEqual([
      { kind: "text", text: "See " },
      { kind: "link", text: "https://example.com/a?b=1#c", href: "https://example.com/a?b=1#c" },
      { kind: "text", text: ", and (" },
      { kind: "link", text: "http://example.org/x", href: "http://example.org/x" },
      { kind: "text", text: ")." },
    ]);
    expect(joined(text)).toBe(text);
  });

  it("takes www. addresses as http links", () => {
    expect(splitLinks("go to www.example.com now")).toEqual([
      { kind: "text", text: "go to " },
      { kind: "link", text: "www.example.com", href: "http://www.example.com/" },
      { kind: "text", text: " now" },
    ]);
  });

  it("leaves other schemes, e-mail addresses and bare names as text", () => {
    for (const text of [
      "javascript:alert(1)",
      "click javascript://example.com/%0aalert(1)",
      "data:text/html,<script>alert(1)</script>",
      "mailto:ann@example.com",
      "ann@example.com",
      "ftp://example.com/file",
      "//example.com/path",
      "node.js and index.md",
      '<a href="x">hi</a>',
    ]) {
      expect(splitLinks(text), text).toEqual([{ kind: "text", text }]);
    }
  });

  it("keeps markup in the text as text, around a real link", () => {
    const text = '<img src=x onerror="alert(1)"> https://example.com';
    const parts = splitLinks(text);
    expect(parts[0]).toEqual({ kind: "text", text: '<img src=x onerror="alert(1)"> ' });
    expect(parts[1]).toMatchObject({ kind: "link", href: "https://example.com/" });
    expect(joined(text)).toBe(text);
  });

  it("returns the text as one run when there is no link, and nothing for empty text", () => {
    expect(splitLinks("just words")).toEqual([{ kind: "text", text: "just words" }]);
    expect(splitLinks("")).toEqual([]);
  });
});

describe("safeHref", () => {
  it("accepts http and https only", () => {
    expect(safeHref("https://example.com")).toBe("https://example.com/");
    expect(safeHref("HTTP://EXAMPLE.COM/A")).toBe("http://example.com/A");
    expect(safeHref("javascript:alert(1)")).toBeNull();
    expect(safeHref("data:text/html,hi")).toBeNull();
    expect(safeHref("not a url")).toBeNull();
  });
});
