/** One message: own on the right with a status tick, the peer's on the left. */
import Box from "@mui/material/Box";
import Button from "@mui/material/Button";
import Tooltip from "@mui/material/Tooltip";
import Typography from "@mui/material/Typography";
import { describeError } from "../lib/errors";
import { formatClock } from "../lib/time";
import type { MessageState, UiMessage } from "../store/chat";
import { CheckIcon, ClockIcon, DoneAllIcon, ErrorIcon } from "./icons";

const STATUS_LABEL: Record<MessageState, string> = {
  sending: "Sending",
  sent: "Sent",
  delivered: "Delivered",
  read: "Read",
  failed: "Not sent",
  received: "Received",
};

export function StatusTick(props: { status: MessageState; testId: string }) {
  const { status } = props;
  const label = STATUS_LABEL[status];
  const common = {
    fontSize: "inherit" as const,
    "aria-label": label,
    "data-testid": props.testId,
    "data-status": status,
    role: "img",
  };
  let icon;
  switch (status) {
    case "sending":
      icon = <ClockIcon {...common} />;
      break;
    case "sent":
      icon = <CheckIcon {...common} />;
      break;
    case "delivered":
      icon = <DoneAllIcon {...common} />;
      break;
    case "read":
      icon = <DoneAllIcon {...common} sx={{ color: "#80deea" }} />;
      break;
    case "failed":
      icon = <ErrorIcon {...common} sx={{ color: "#ffcdd2" }} />;
      break;
    case "received":
      return null;
  }
  return (
    <Tooltip title={label}>
      <Box component="span" sx={{ display: "inline-flex", fontSize: 16, ml: 0.5 }}>
        {icon}
      </Box>
    </Tooltip>
  );
}

export function MessageBubble(props: {
  message: UiMessage;
  onRetry: (clientMsgId: string) => void;
}) {
  const { message } = props;
  const own = message.own;
  return (
    <Box
      sx={{ display: "flex", justifyContent: own ? "flex-end" : "flex-start", px: 1.5, py: 0.25 }}
    >
      <Box
        data-testid={`message-${message.key}`}
        data-client-msg-id={message.clientMsgId}
        data-message-id={message.messageId}
        data-own={own ? "true" : "false"}
        sx={{
          maxWidth: "75%",
          px: 1.5,
          py: 0.75,
          borderRadius: 2,
          borderBottomRightRadius: own ? 4 : undefined,
          borderBottomLeftRadius: own ? undefined : 4,
          bgcolor: own ? "primary.main" : "action.hover",
          color: own ? "primary.contrastText" : "text.primary",
        }}
      >
        <Typography
          variant="body1"
          sx={{ whiteSpace: "pre-wrap", overflowWrap: "anywhere" }}
          data-testid="message-text"
        >
          {message.text}
        </Typography>
        <Box
          sx={{
            display: "flex",
            alignItems: "center",
            justifyContent: "flex-end",
            gap: 0.25,
            opacity: 0.8,
          }}
        >
          <Typography variant="caption" component="time" dateTime={message.sentAt.toISOString()}>
            {formatClock(message.sentAt)}
          </Typography>
          {own ? <StatusTick status={message.status} testId={`status-${message.key}`} /> : null}
        </Box>
        {message.status === "failed" ? (
          <Box sx={{ display: "flex", alignItems: "center", gap: 1, mt: 0.5 }}>
            <Typography variant="caption">
              {message.error ? describeError(message.error) : "Not sent."}
            </Typography>
            <Button
              size="small"
              variant="contained"
              color="inherit"
              sx={{ color: "text.primary" }}
              data-testid={`retry-${message.key}`}
              onClick={() => {
                props.onRetry(message.clientMsgId);
              }}
            >
              Retry
            </Button>
          </Box>
        ) : null}
      </Box>
    </Box>
  );
}
