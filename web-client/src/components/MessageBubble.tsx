/**
 * One message: own on the right with a status tick, the peer's on the left. Screen readers hear
 * who wrote it before the text and its time after; the time shows its full date and time on
 * hover and on keyboard focus. A refused message says why in full, with Retry when retrying can
 * help.
 */
import Box from "@mui/material/Box";
import Button from "@mui/material/Button";
import Tooltip from "@mui/material/Tooltip";
import Typography from "@mui/material/Typography";
import { useTheme } from "@mui/material/styles";
import { visuallyHidden } from "../lib/a11y";
import { describeError } from "../lib/errors";
import { formatClock, formatFullDateTime } from "../lib/time";
import type { UiMessage } from "../store/chat";
import { OWN_BUBBLE } from "../theme";
import { MessageText } from "./MessageText";
import { StatusTick } from "./StatusTick";

/** What a failed message may carry beyond UiMessage (the refusal work adds these to the store). */
interface RefusalDetails {
  /** The refusal in full, as the store words it. */
  reason?: unknown;
  /** Whether sending it again can succeed; missing means yes. */
  retryable?: unknown;
}

/** Whether a failed message offers Retry: unless the store says it cannot succeed. */
export function canRetry(message: UiMessage): boolean {
  const details = message as UiMessage & RefusalDetails;
  const onError = message.error as (RefusalDetails & object) | null;
  if (typeof details.retryable === "boolean") return details.retryable;
  if (typeof onError?.retryable === "boolean") return onError.retryable;
  return true;
}

/** Why a message was not sent, in words. */
export function refusalText(message: UiMessage): string {
  const { reason } = message as UiMessage & RefusalDetails;
  if (typeof reason === "string" && reason.trim() !== "") return reason;
  return message.error ? describeError(message.error) : "Not sent.";
}

export function MessageBubble(props: {
  message: UiMessage;
  /** Who wrote it, as readers announce it ("You" for own messages). */
  author: string;
  onRetry: (clientMsgId: string) => void;
}) {
  const { message } = props;
  const own = message.own;
  const mode = useTheme().palette.mode;
  const colors = OWN_BUBBLE[mode];
  const failed = message.status === "failed";
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
          minWidth: 0,
          px: 1.5,
          py: 0.75,
          borderRadius: 2,
          borderBottomRightRadius: own ? 4 : undefined,
          borderBottomLeftRadius: own ? undefined : 4,
          bgcolor: own ? colors.background : "action.hover",
          color: own ? colors.text : "text.primary",
        }}
      >
        <Box component="span" sx={visuallyHidden} data-testid="message-author">
          {`${props.author}: `}
        </Box>
        <Typography
          variant="body1"
          sx={{ whiteSpace: "pre-wrap", overflowWrap: "anywhere" }}
          data-testid="message-text"
        >
          <MessageText text={message.text} />
        </Typography>
        <Box
          sx={{
            display: "flex",
            alignItems: "center",
            justifyContent: "flex-end",
            gap: 0.25,
            color: own ? colors.meta : "text.secondary",
          }}
        >
          <Tooltip title={formatFullDateTime(message.sentAt)}>
            <Typography
              variant="caption"
              component="time"
              dateTime={message.sentAt.toISOString()}
              tabIndex={0}
              data-testid="message-time"
              sx={{
                borderRadius: 0.5,
                "&:focus-visible": { outline: "2px solid currentColor", outlineOffset: 1 },
              }}
            >
              {formatClock(message.sentAt)}
            </Typography>
          </Tooltip>
          {own ? (
            <StatusTick status={message.status} testId={`status-${message.key}`} mode={mode} />
          ) : null}
        </Box>
        {failed ? (
          <Box
            sx={{ mt: 0.75, display: "flex", flexWrap: "wrap", alignItems: "center", gap: 1 }}
            data-testid={`refusal-${message.key}`}
          >
            <Typography
              variant="body2"
              role="alert"
              sx={{ flex: "1 1 12em", minWidth: 0, overflowWrap: "anywhere", color: colors.text }}
            >
              {refusalText(message)}
            </Typography>
            {canRetry(message) ? (
              <Button
                size="small"
                variant="contained"
                color="inherit"
                sx={{ color: "#000000de", bgcolor: "#ffffff", flexShrink: 0 }}
                data-testid={`retry-${message.key}`}
                onClick={() => {
                  props.onRetry(message.clientMsgId);
                }}
              >
                Retry
              </Button>
            ) : null}
          </Box>
        ) : null}
      </Box>
    </Box>
  );
}
