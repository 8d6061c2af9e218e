/** Light and dark themes; the app picks the one the system prefers (prefers-color-scheme). */
import useMediaQuery from "@mui/material/useMediaQuery";
import { createTheme, type Theme } from "@mui/material/styles";
import { useMemo } from "react";

export function makeTheme(mode: "light" | "dark"): Theme {
  return createTheme({
    palette: {
      mode,
      // White text on own bubbles reads well on both blues.
      primary: { main: mode === "dark" ? "#1e88e5" : "#1565c0", contrastText: "#fff" },
      background: mode === "dark" ? { default: "#121417", paper: "#1b1e23" } : {},
    },
    shape: { borderRadius: 10 },
  });
}

export function useSystemTheme(): Theme {
  const dark = useMediaQuery("(prefers-color-scheme: dark)", { noSsr: true });
  return useMemo(() => makeTheme(dark ? "dark" : "light"), [dark]);
}
