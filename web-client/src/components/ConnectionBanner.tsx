/**
 * Says so when the connection is not up, with the countdown to the next try and "Retry now".
 * The first "Connecting…" waits CONNECTING_GRACE_MS before it shows: connecting usually takes
 * far less, and a bar that appears and goes at once would only push the page down and back on
 * every load. Losing the connection shows at once. A plain bar in the alert colours rather than
 * MUI's Alert and Button: it is part of the first screen, whose JavaScript is kept small.
 */
import Box from "@mui/material/Box";
import { alpha } from "@mui/material/styles";
import { useEffect, useState, type ReactNode } from "react";
import { useNow } from "../hooks/useNow";
import type { ConnectionState } from "../store/chat";
import { useChat, useSession } from "./ChatContext";

export const CONNECTING_GRACE_MS = 2000;

/** The connection state once it has lasted the grace period (first connects only). */
function useGraceOver(connection: ConnectionState): boolean {
  const [lasted, setLasted] = useState<ConnectionState | null>(null);
  const graced = connection.kind === "connecting" && connection.attempt === 0;
  useEffect(() => {
    if (!graced) return;
    const timer = setTimeout(() => {
      setLasted(connection);
    }, CONNECTING_GRACE_MS);
    return () => {
      clearTimeout(timer);
    };
  }, [connection, graced]);
  return !graced || lasted === connection;
}

function Bar(props: {
  severity: "info" | "warning";
  state: string;
  action?: ReactNode;
  children: ReactNode;
}) {
  return (
    <Box
      role="status"
      data-testid="connection-banner"
      data-state={props.state}
      sx={(t) => ({
        display: "flex",
        alignItems: "center",
        gap: 1,
        minHeight: 40,
        px: 2,
        py: 0.5,
        typography: "body2",
        color: "text.primary",
        bgcolor: alpha(t.palette[props.severity].main, t.palette.mode === "dark" ? 0.24 : 0.14),
        borderBottom: 1,
        borderColor: alpha(t.palette[props.severity].main, 0.5),
      })}
    >
      <Box sx={{ flex: 1, minWidth: 0 }}>{props.children}</Box>
      {props.action}
    </Box>
  );
}

export function ConnectionBanner() {
  const connection = useChat((s) => s.connection);
  const session = useSession();
  const now = useNow(1000);
  const show = useGraceOver(connection);
  if (connection.kind === "online" || connection.kind === "idle" || !show) return null;
  if (connection.kind === "connecting") {
    return (
      <Bar severity="info" state="connecting">
        {connection.attempt === 0 ? "Connecting…" : "Reconnecting…"}
      </Bar>
    );
  }
  const seconds = Math.max(0, Math.floor((connection.retryAt - now) / 1000));
  return (
    <Bar
      severity="warning"
      state="reconnecting"
      action={
        <Box
          component="button"
          type="button"
          onClick={() => {
            session.reconnectNow();
          }}
          sx={{
            flexShrink: 0,
            px: 1,
            py: 0.5,
            border: 0,
            borderRadius: 1,
            bgcolor: "transparent",
            color: "inherit",
            typography: "button",
            cursor: "pointer",
            "&:hover": { bgcolor: "action.hover" },
            "&:focus-visible": { outline: "2px solid currentColor" },
          }}
        >
          Retry now
        </Box>
      }
    >
      Connection lost. {seconds > 0 ? `Reconnecting in ${seconds} s…` : "Reconnecting…"}
    </Bar>
  );
}
