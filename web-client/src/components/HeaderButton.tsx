/**
 * A round icon button and a hover-and-focus tip for the app bar, in plain elements: MUI's
 * IconButton brings ButtonBase, its ripple and transitions, and its Tooltip brings Popper, about
 * 20 kB gzipped that the first screen would load for two buttons (the chat pane loads them when
 * it is opened). Same look: a 40 px circle, a light wash on hover, an outline on keyboard focus.
 */
import Box from "@mui/material/Box";
import { useState, type MouseEventHandler, type ReactNode } from "react";

export function HeaderButton(props: {
  "aria-label": string;
  "aria-pressed"?: boolean;
  "data-testid"?: string;
  disabled?: boolean;
  onClick?: MouseEventHandler<HTMLButtonElement>;
  children: ReactNode;
}) {
  return (
    <Box
      component="button"
      type="button"
      aria-label={props["aria-label"]}
      aria-pressed={props["aria-pressed"]}
      data-testid={props["data-testid"]}
      disabled={props.disabled}
      onClick={props.onClick}
      sx={{
        display: "inline-flex",
        alignItems: "center",
        justifyContent: "center",
        flexShrink: 0,
        width: 40,
        height: 40,
        p: 0,
        m: 0,
        border: 0,
        borderRadius: "50%",
        bgcolor: "transparent",
        color: "inherit",
        fontSize: "1.5rem",
        cursor: "pointer",
        "&:hover:not(:disabled)": { bgcolor: "action.hover" },
        "&:focus-visible": { outline: "2px solid currentColor", outlineOffset: -2 },
        "&:disabled": { cursor: "default", color: "inherit", opacity: 0.6 },
      }}
    >
      {props.children}
    </Box>
  );
}

/**
 * Shows `title` under its child while the pointer is over it or keyboard focus is in it; Escape
 * hides it until the pointer or the focus leaves. The child names itself (aria-label): the tip
 * only repeats that name for the eyes, so readers skip it.
 */
export function HeaderTip(props: { title: string; children: ReactNode }) {
  const [dismissed, setDismissed] = useState(false);
  const reset = () => {
    setDismissed(false);
  };
  return (
    <Box
      component="span"
      onKeyDown={(event) => {
        if (event.key === "Escape") setDismissed(true);
      }}
      onPointerLeave={reset}
      onBlur={reset}
      sx={{
        position: "relative",
        display: "inline-flex",
        ...(dismissed
          ? {}
          : {
              "&:hover > [data-tip], &:has(:focus-visible) > [data-tip]": {
                visibility: "visible",
                opacity: 1,
              },
            }),
      }}
    >
      {props.children}
      <Box
        component="span"
        data-tip
        aria-hidden="true"
        sx={{
          position: "absolute",
          top: "calc(100% + 6px)",
          right: 0,
          zIndex: "tooltip",
          visibility: "hidden",
          opacity: 0,
          transition: "opacity 150ms",
          pointerEvents: "none",
          width: "max-content",
          maxWidth: 300,
          px: 1,
          py: 0.5,
          borderRadius: 1,
          bgcolor: "grey.800",
          color: "common.white",
          typography: "caption",
          fontWeight: 500,
        }}
      >
        {props.title}
      </Box>
    </Box>
  );
}
