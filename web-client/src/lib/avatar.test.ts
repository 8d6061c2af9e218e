import { describe, expect, it } from "vitest";
import { AVATAR_PALETTE, AVATAR_TEXT, avatarColors, initials } from "./avatar";
import { contrastRatio } from "./contrast";

describe("initials", () => {
  it("takes two words' first letters, else two capitals, else the first two characters", () => {
    expect(initials("Ann Lee")).toBe("AL");
    expect(initials("ann lee smith")).toBe("AL");
    expect(initials("SwiftPanda42")).toBe("SP");
    expect(initials("alex")).toBe("AL");
    expect(initials("Émile Zola")).toBe("ÉZ");
    expect(initials("  x ")).toBe("X");
    expect(initials("")).toBe("?");
    // Never half an emoji.
    expect(initials("🦊fox")).toBe("🦊F");
  });
});

describe("avatarColors", () => {
  it("is the same for the same id, in each theme", () => {
    expect(avatarColors("user-1", "light")).toEqual(avatarColors("user-1", "light"));
    expect(avatarColors("user-1", "dark")).toEqual(avatarColors("user-1", "dark"));
    const light = avatarColors("user-1", "light").background;
    const dark = avatarColors("user-1", "dark").background;
    // Both from the same hue of the palette.
    expect(AVATAR_PALETTE.some(([l, d]) => l === light && d === dark)).toBe(true);
  });

  it("spreads ids over the palette", () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i += 1) seen.add(avatarColors(`user-${i}`, "light").background);
    expect(seen.size).toBe(AVATAR_PALETTE.length);
  });

  it("keeps the initials at 4.5:1 or better on every colour in both themes", () => {
    for (const [light, dark] of AVATAR_PALETTE) {
      expect(contrastRatio(light, AVATAR_TEXT.light), light).toBeGreaterThanOrEqual(4.5);
      expect(contrastRatio(dark, AVATAR_TEXT.dark), dark).toBeGreaterThanOrEqual(4.5);
    }
  });
});
