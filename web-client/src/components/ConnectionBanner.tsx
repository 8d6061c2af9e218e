/** Says so when the connection is not up, with the countdown to the next try and "Retry now". */
import Alert from "@mui/material/Alert";
import Button from "@mui/material/Button";
import { useNow } from "../hooks/useNow";
import { useChat, useSession } from "./ChatContext";

export function ConnectionBanner() {
  const connection = useChat((s) => s.connection);
  const session = useSession();
  const now = useNow(1000);
  if (connection.kind === "online" || connection.kind === "idle") return null;
  if (connection.kind === "connecting") {
    return (
      <Alert severity="info" data-testid="connection-banner" data-state="connecting" square>
        {connection.attempt === 0 ? "Connecting…" : "Reconnecting…"}
      </Alert>
    );
  }
  const seconds = Math.max(0, Math.floor((connection.retryAt - now) / 1000));
  return (
    <Alert
      severity="warning"
      data-testid="connection-banner"
      data-state="reconnecting"
      square
      action={
        <Button
          color="inherit"
          size="small"
          onClick={() => {
            session.reconnectNow();
          }}
        >
          Retry now
        </Button>
      }
    >
      Connection lost. {seconds > 0 ? `Reconnecting in ${seconds} s…` : "Reconnecting…"}
    </Alert>
  );
}
