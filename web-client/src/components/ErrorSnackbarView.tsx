/** The snackbar itself (loaded with the first error: see ErrorSnackbar). */
import Alert from "@mui/material/Alert";
import Snackbar from "@mui/material/Snackbar";
import { describeError } from "../lib/errors";
import type { ApiError } from "../store/chat";

export function ErrorSnackbarView(props: { error: ApiError | null; onClose: () => void }) {
  const { error, onClose } = props;
  return (
    <Snackbar
      open={error !== null}
      autoHideDuration={6000}
      onClose={(_event, reason) => {
        if (reason !== "clickaway") onClose();
      }}
      anchorOrigin={{ vertical: "bottom", horizontal: "center" }}
    >
      <Alert severity="error" onClose={onClose} data-testid="error-snackbar" variant="filled">
        {error ? describeError(error) : ""}
      </Alert>
    </Snackbar>
  );
}
