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
