/** The colours the screens depend on for contrast, checked in both themes (WCAG AA). */
import { describe, expect, it } from "vitest";
import { contrastRatio } from "./lib/contrast";
import { makeTheme, OWN_BUBBLE, type Mode } from "./theme";

const MODES: Mode[] = ["light", "dark"];

/** A colour as it shows over `under`: "#rrggbb" as is, "rgba(r, g, b, a)" blended. */
function opaque(color: string, under: string): string {
  const rgba = /^rgba\((\d+),\s*(\d+),\s*(\d+),\s*([\d.]+)\)$/.exec(color);
  if (!rgba) return color;
  const alpha = Number(rgba[4]);
  const base = [1, 3, 5].map((i) => parseInt(under.slice(i, i + 2), 16));
  return (
    "#" +
    [1, 2, 3]
      .map((i, k) => Math.round(Number(rgba[i]) * alpha + (base[k] ?? 0) * (1 - alpha)))
      .map((c) => c.toString(16).padStart(2, "0"))
      .join("")
  );
}

describe("theme contrast", () => {
  it("keeps text on the own bubble at 4.5:1 or better", () => {
    for (const mode of MODES) {
      const bubble = OWN_BUBBLE[mode];
      expect(contrastRatio(bubble.text, bubble.background), mode).toBeGreaterThanOrEqual(4.5);
      expect(contrastRatio(bubble.meta, bubble.background), mode).toBeGreaterThanOrEqual(4.5);
    }
  });

  it("gives the palette colours used under text a contrast text of 4.5:1 or better", () => {
    for (const mode of MODES) {
      const { palette } = makeTheme(mode);
      for (const name of ["primary", "error"] as const) {
        const { main, contrastText } = palette[name];
        const text = opaque(contrastText, main);
        expect(contrastRatio(main, text), `${mode} ${name}`).toBeGreaterThanOrEqual(4.5);
      }
    }
  });

  it("keeps primary text readable on the background (links, counts, buttons)", () => {
    for (const mode of MODES) {
      const { palette } = makeTheme(mode);
      const background = mode === "dark" ? palette.background.default : "#ffffff";
      expect(contrastRatio(palette.primary.main, background), mode).toBeGreaterThanOrEqual(4.5);
    }
  });
});
