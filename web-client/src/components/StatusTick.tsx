/**
 * The status of my message, by shape first and colour second: sending a clock, sent one tick,
 * delivered two ticks, read two ticks on a filled disc in a bright cyan, failed an error disc.
 * The element with the role (img) carries the name and takes keyboard focus, and its tooltip
 * shows on hover and on focus alike.
 *
 * Contrast against the own bubble (theme.ts OWN_BUBBLE, #1565c0 in both themes), computed with
 * lib/contrast.ts and checked in StatusTick.test.tsx: ticks #e3f2fd 5.03:1, read disc #84ffff
 * 4.85:1 (its ticks are cut in the bubble's colour, the same 4.85:1), failed #ffcdd2 4.08:1; all
 * above the 3:1 that graphics need.
 */
import Box from "@mui/material/Box";
import Tooltip from "@mui/material/Tooltip";
import type { MessageState } from "../store/chat";
import { OWN_BUBBLE, type Mode } from "../theme";

export type TickStatus = Exclude<MessageState, "received">;

export const STATUS_LABEL: Record<TickStatus, string> = {
  sending: "Sending",
  sent: "Sent",
  delivered: "Delivered",
  read: "Read",
  failed: "Not sent",
};

/** Each status's colour on the own bubble (see the contrast figures above). */
export const TICK_COLOR: Record<Mode, Record<TickStatus, string>> = {
  light: {
    sending: "#e3f2fd",
    sent: "#e3f2fd",
    delivered: "#e3f2fd",
    read: "#84ffff",
    failed: "#ffcdd2",
  },
  dark: {
    sending: "#e3f2fd",
    sent: "#e3f2fd",
    delivered: "#e3f2fd",
    read: "#84ffff",
    failed: "#ffcdd2",
  },
};

const CHECK = "M9 16.2 4.8 12l-1.4 1.4L9 19 21 7l-1.4-1.4L9 16.2z";
const DOUBLE_CHECK =
  "M18 7l-1.41-1.41-6.34 6.34 1.41 1.41L18 7zm4.24-1.41L11.66 16.17 7.48 12l-1.41 1.41L11.66 19l12-12-1.42-1.41zM.41 13.41 6 19l1.41-1.41L1.83 12 .41 13.41z";
const CLOCK =
  "M11.99 2C6.47 2 2 6.48 2 12s4.47 10 9.99 10C17.52 22 22 17.52 22 12S17.52 2 11.99 2zM12 20c-4.42 0-8-3.58-8-8s3.58-8 8-8 8 3.58 8 8-3.58 8-8 8zm.5-13H11v6l5.25 3.15.75-1.23-4.5-2.67z";
const ERROR =
  "M12 2C6.48 2 2 6.48 2 12s4.48 10 10 10 10-4.48 10-10S17.52 2 12 2zm1 15h-2v-2h2v2zm0-4h-2V7h2v6z";

/** The drawing, in currentColor; `cut` is the colour the read disc's ticks are cut in. */
function shape(status: TickStatus, cut: string) {
  switch (status) {
    case "sending":
      return <path d={CLOCK} />;
    case "sent":
      return <path d={CHECK} />;
    case "delivered":
      return <path d={DOUBLE_CHECK} />;
    case "read":
      return (
        <>
          <circle cx="12" cy="12" r="12" />
          <path d={DOUBLE_CHECK} fill={cut} transform="translate(4.18 4.01) scale(0.65)" />
        </>
      );
    case "failed":
      return <path d={ERROR} />;
  }
}

export function StatusTick(props: { status: MessageState; testId: string; mode: Mode }) {
  const { status, mode } = props;
  if (status === "received") return null;
  const label = STATUS_LABEL[status];
  const color = TICK_COLOR[mode][status];
  return (
    <Tooltip title={label}>
      <Box
        component="span"
        role="img"
        aria-label={label}
        tabIndex={0}
        data-testid={props.testId}
        data-status={status}
        sx={{
          display: "inline-flex",
          width: 16,
          height: 16,
          ml: 0.5,
          color,
          borderRadius: "50%",
          "&:focus-visible": { outline: `2px solid ${color}`, outlineOffset: 1 },
        }}
      >
        <svg
          viewBox="0 0 24 24"
          width="16"
          height="16"
          fill="currentColor"
          aria-hidden="true"
          focusable="false"
          data-shape={status}
        >
          {shape(status, OWN_BUBBLE[mode].background)}
        </svg>
      </Box>
    </Tooltip>
  );
}
