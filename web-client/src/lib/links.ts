/**
 * Finds the links in a message's text, for MessageText to render as elements (never as HTML).
 * Only web links become links: `http://` and `https://` ones, and `www.` ones (taken as http).
 * Other schemes (javascript:, data:, mailto:, ftp:, protocol-relative //) and bare names such
 * as "node.js" stay text. Matching is linkify-it's (trailing punctuation, brackets, unicode).
 */
import { LinkifyIt } from "linkify-it";

export type TextPart =
  { kind: "text"; text: string } | { kind: "link"; text: string; href: string };

let linkify: LinkifyIt | null = null;

function matcher(): LinkifyIt {
  if (!linkify) {
    linkify = new LinkifyIt({ fuzzyLink: true, fuzzyEmail: false, fuzzyIP: false })
      .add("ftp:", null)
      .add("mailto:", null)
      .add("//", null);
  }
  return linkify;
}

/** The URL for a link, or null when it is not a web link. */
export function safeHref(url: string): string | null {
  try {
    const parsed = new URL(url);
    return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
  } catch {
    return null;
  }
}

/** The text cut into plain runs and links, in order; joined, the runs give the text back. */
export function splitLinks(text: string): TextPart[] {
  const matches = matcher().match(text) ?? [];
  const parts: TextPart[] = [];
  let at = 0;
  for (const m of matches) {
    const explicit = /^https?:\/\//i.test(m.raw);
    const www = m.schema === "" && /^www\./i.test(m.raw);
    const href = explicit || www ? safeHref(m.url) : null;
    if (href === null) continue; // stays in the text run
    if (m.index > at) parts.push({ kind: "text", text: text.slice(at, m.index) });
    parts.push({ kind: "link", text: m.raw, href });
    at = m.lastIndex;
  }
  if (at < text.length) parts.push({ kind: "text", text: text.slice(at) });
  return parts;
}
