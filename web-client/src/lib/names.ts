/** Display names: a friendly random one for new users, and what a chosen one may be. */

export const MAX_NAME_CHARS = 50;

/** Why a name cannot be used, or null when it can. */
export function nameProblem(name: string): string | null {
  const trimmed = name.trim();
  if (trimmed === "") return "A name cannot be empty.";
  if (Array.from(trimmed).length > MAX_NAME_CHARS) return `At most ${MAX_NAME_CHARS} characters.`;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(trimmed)) return "No control characters, please.";
  return null;
}

/** A friendly random display name such as "SwiftPanda42". */
const ADJECTIVES = [
  "Swift",
  "Calm",
  "Brave",
  "Clever",
  "Sunny",
  "Quiet",
  "Lucky",
  "Bright",
  "Gentle",
  "Jolly",
  "Mellow",
  "Nimble",
  "Witty",
  "Bold",
  "Cosy",
  "Eager",
  "Happy",
  "Keen",
  "Merry",
  "Zesty",
];
const ANIMALS = [
  "Panda",
  "Otter",
  "Falcon",
  "Fox",
  "Koala",
  "Lynx",
  "Heron",
  "Badger",
  "Dolphin",
  "Tiger",
  "Wombat",
  "Owl",
  "Puffin",
  "Gecko",
  "Bison",
  "Hare",
  "Robin",
  "Seal",
  "Yak",
  "Zebra",
];

export function randomName(random: () => number = Math.random): string {
  const pick = (list: readonly string[]): string =>
    list[Math.floor(random() * list.length) % list.length] ?? "";
  const n = Math.floor(random() * 100) % 100;
  return `${pick(ADJECTIVES)}${pick(ANIMALS)}${n}`;
}
