/**
 * Light and dark themes; the app picks the one the system prefers (prefers-color-scheme). Text
 * colours on coloured surfaces are chosen for 4.5:1 (WCAG AA): MUI picks each palette colour's
 * contrast text at that threshold, and the own bubble's colours are fixed here (theme.test.ts
 * checks them).
 */
import useMediaQuery from "@mui/material/useMediaQuery";
import { createTheme, type Theme } from "@mui/material/styles";
import { useMemo } from "react";

export type Mode = "light" | "dark";

/**
 * My messages: a deep blue in both themes (it stands out on white and on the dark background),
 * white text (5.75:1), and a paler tint for its time and ticks (5.03:1).
 */
export const OWN_BUBBLE: Record<Mode, { background: string; text: string; meta: string }> = {
  light: { background: "#1565c0", text: "#ffffff", meta: "#e3f2fd" },
  dark: { background: "#1565c0", text: "#ffffff", meta: "#e3f2fd" },
};

export function makeTheme(mode: Mode): Theme {
  return createTheme({
    palette: {
      mode,
      // Light: white on the deep blue (5.75:1). Dark: a light blue with dark text, readable on
      // the dark background as text and under text (badges, buttons) alike.
      primary: mode === "dark" ? { main: "#90caf9" } : { main: "#1565c0", contrastText: "#ffffff" },
      background: mode === "dark" ? { default: "#121417", paper: "#1b1e23" } : {},
      contrastThreshold: 4.5,
    },
    shape: { borderRadius: 10 },
  });
}

export function useSystemTheme(): Theme {
  const dark = useMediaQuery("(prefers-color-scheme: dark)", { noSsr: true });
  return useMemo(() => makeTheme(dark ? "dark" : "light"), [dark]);
}
