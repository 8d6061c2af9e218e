/** The latest refusal not tied to a message, in words (never a raw code). */
import Alert from "@mui/material/Alert";
import Snackbar from "@mui/material/Snackbar";
import { describeError } from "../lib/errors";
import { useChat, useChatStore } from "./ChatContext";

export function ErrorSnackbar() {
  const error = useChat((s) => s.lastError);
  const store = useChatStore();
  const clearError = () => {
    store.getState().clearError();
  };
  return (
    <Snackbar
      open={error !== null}
      autoHideDuration={6000}
      onClose={(_event, reason) => {
        if (reason !== "clickaway") clearError();
      }}
      anchorOrigin={{ vertical: "bottom", horizontal: "center" }}
    >
      <Alert severity="error" onClose={clearError} data-testid="error-snackbar" variant="filled">
        {error ? describeError(error) : ""}
      </Alert>
    </Snackbar>
  );
}
