/**
 * What an avatar shows: the same initials for a name everywhere (people list and chat header), on
 * a colour derived from the user id, so a person keeps their colour across renames and reloads.
 * Each palette entry is checked (avatar.test.ts) for at least 4.5:1 between initials and circle:
 * deep shades under white initials in the light theme, light shades under dark ones in the dark.
 */

/** Up to two letters: the first of the first two words, else two capitals, else the first two. */
export function initials(name: string): string {
  const trimmed = name.trim();
  const words = trimmed.split(/\s+/).filter((w) => w !== "");
  const first = (s: string) => Array.from(s)[0] ?? "";
  if (words.length >= 2) return (first(words[0] ?? "") + first(words[1] ?? "")).toUpperCase();
  const caps = trimmed.match(/\p{Lu}/gu);
  if (caps && caps.length >= 2) return caps.slice(0, 2).join("");
  return Array.from(trimmed).slice(0, 2).join("").toUpperCase() || "?";
}

/** [light theme circle, dark theme circle] per hue (Material 800-900 and 200-300 shades). */
export const AVATAR_PALETTE: readonly (readonly [string, string])[] = [
  ["#c62828", "#ef9a9a"], // red
  ["#ad1457", "#f48fb1"], // pink
  ["#6a1b9a", "#ce93d8"], // purple
  ["#4527a0", "#b39ddb"], // deep purple
  ["#283593", "#9fa8da"], // indigo
  ["#1565c0", "#90caf9"], // blue
  ["#01579b", "#81d4fa"], // light blue
  ["#006064", "#80deea"], // cyan
  ["#00695c", "#80cbc4"], // teal
  ["#2e7d32", "#a5d6a7"], // green
  ["#33691e", "#c5e1a5"], // light green
  ["#6d4c41", "#bcaaa4"], // brown
  ["#bf360c", "#ffab91"], // deep orange
  ["#455a64", "#b0bec5"], // blue grey
];

/** Initials on the light theme's circles, and on the dark theme's. */
export const AVATAR_TEXT = { light: "#ffffff", dark: "#1b1e23" } as const;

/** FNV-1a over the id's UTF-16 units: cheap, stable, and well spread for short ids. */
function hash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i += 1) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export function avatarColors(
  userId: string,
  mode: "light" | "dark",
): { background: string; color: string } {
  const [light, dark] = AVATAR_PALETTE[hash(userId) % AVATAR_PALETTE.length] ?? [
    "#455a64",
    "#b0bec5",
  ];
  return mode === "dark"
    ? { background: dark, color: AVATAR_TEXT.dark }
    : { background: light, color: AVATAR_TEXT.light };
}
