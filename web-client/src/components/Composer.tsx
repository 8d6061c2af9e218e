/**
 * The message input: Enter sends, Shift+Enter starts a new line; a counter appears near the
 * 4,000-character limit. Keystrokes tell the session the person is typing (it throttles). With
 * `autoFocus` it takes the focus when it appears (a chat was opened).
 */
import Box from "@mui/material/Box";
import IconButton from "@mui/material/IconButton";
import TextField from "@mui/material/TextField";
import Typography from "@mui/material/Typography";
import { useEffect, useRef, useState, type KeyboardEvent } from "react";
import { useSession } from "./ChatContext";
import { SendIcon } from "./icons";

export const MAX_MESSAGE_CHARS = 4000;
/** The counter shows from this many characters on. */
export const COUNTER_FROM = 3500;

/** Characters as the server counts them (code points, not UTF-16 units). */
export function charCount(text: string): number {
  return Array.from(text).length;
}

export function Composer(props: { peerId: string; peerName: string; autoFocus?: boolean }) {
  const { peerId, autoFocus = false } = props;
  const session = useSession();
  const [text, setText] = useState("");
  const inputRef = useRef<HTMLTextAreaElement>(null);

  useEffect(() => {
    // Without scrolling: the conversation decides what it shows (the unread line, the bottom).
    if (autoFocus) inputRef.current?.focus({ preventScroll: true });
  }, [autoFocus]);
  const count = charCount(text);
  const tooLong = count > MAX_MESSAGE_CHARS;
  const canSend = text.trim() !== "" && !tooLong;

  const send = () => {
    if (!canSend) return;
    session.sendMessage(peerId, text.trim());
    setText("");
  };

  const onKeyDown = (event: KeyboardEvent<HTMLDivElement>) => {
    if (event.key === "Enter" && !event.shiftKey && !event.nativeEvent.isComposing) {
      event.preventDefault();
      send();
    }
  };

  return (
    <Box
      component="form"
      sx={{ display: "flex", alignItems: "flex-end", gap: 1, p: 1.5 }}
      onSubmit={(event) => {
        event.preventDefault();
        send();
      }}
    >
      <Box sx={{ flex: 1 }}>
        <TextField
          fullWidth
          multiline
          maxRows={6}
          size="small"
          placeholder={`Message ${props.peerName}`}
          value={text}
          onChange={(event) => {
            setText(event.target.value);
            if (event.target.value === "") session.stoppedTyping(peerId);
            else session.typed(peerId);
          }}
          onKeyDown={onKeyDown}
          onBlur={() => {
            session.stoppedTyping(peerId);
          }}
          error={tooLong}
          inputRef={inputRef}
          slotProps={{
            htmlInput: {
              "aria-label": `Message to ${props.peerName}`,
              "data-testid": "composer-input",
            },
          }}
        />
        {count >= COUNTER_FROM ? (
          <Typography
            variant="caption"
            color={tooLong ? "error" : "text.secondary"}
            data-testid="char-counter"
            aria-live="polite"
            sx={{ display: "block", textAlign: "right", mt: 0.25 }}
          >
            {count.toLocaleString("en-US")} / {MAX_MESSAGE_CHARS.toLocaleString("en-US")}
            {tooLong ? " — too long" : ""}
          </Typography>
        ) : null}
      </Box>
      <IconButton
        type="submit"
        color="primary"
        aria-label="Send message"
        data-testid="send-button"
        disabled={!canSend}
      >
        <SendIcon />
      </IconButton>
    </Box>
  );
}
