/** Your name (the friendly random one at first), with a dialog to change it. */
import Button from "@mui/material/Button";
import Dialog from "@mui/material/Dialog";
import DialogActions from "@mui/material/DialogActions";
import DialogContent from "@mui/material/DialogContent";
import DialogTitle from "@mui/material/DialogTitle";
import IconButton from "@mui/material/IconButton";
import TextField from "@mui/material/TextField";
import Typography from "@mui/material/Typography";
import Box from "@mui/material/Box";
import { useState } from "react";
import { useChat, useSession } from "./ChatContext";
import { EditIcon } from "./icons";

export const MAX_NAME_CHARS = 50;

/** Why a name cannot be used, or null when it can. */
export function nameProblem(name: string): string | null {
  const trimmed = name.trim();
  if (trimmed === "") return "A name cannot be empty.";
  if (Array.from(trimmed).length > MAX_NAME_CHARS) return `At most ${MAX_NAME_CHARS} characters.`;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(trimmed)) return "No control characters, please.";
  return null;
}

export function NameEditor() {
  const name = useChat((s) => s.self.displayName);
  const session = useSession();
  const [draft, setDraft] = useState<string | null>(null);
  const problem = draft === null ? null : nameProblem(draft);

  const save = () => {
    if (draft === null || problem) return;
    const next = draft.trim();
    setDraft(null);
    if (next !== name) session.rename(next);
  };

  return (
    <Box sx={{ display: "flex", alignItems: "center", minWidth: 0 }}>
      <Typography noWrap data-testid="self-name" title="Your name">
        {name}
      </Typography>
      <IconButton
        color="inherit"
        aria-label="Change your name"
        data-testid="rename-button"
        onClick={() => {
          setDraft(name);
        }}
      >
        <EditIcon fontSize="small" />
      </IconButton>
      <Dialog
        open={draft !== null}
        onClose={() => {
          setDraft(null);
        }}
      >
        <Box
          component="form"
          onSubmit={(event) => {
            event.preventDefault();
            save();
          }}
        >
          <DialogTitle>Your name</DialogTitle>
          <DialogContent>
            <TextField
              autoFocus
              fullWidth
              margin="dense"
              label="Name others see"
              value={draft ?? ""}
              onChange={(event) => {
                setDraft(event.target.value);
              }}
              error={problem !== null}
              helperText={problem ?? " "}
              slotProps={{ htmlInput: { "data-testid": "rename-input" } }}
            />
          </DialogContent>
          <DialogActions>
            <Button
              onClick={() => {
                setDraft(null);
              }}
            >
              Cancel
            </Button>
            <Button type="submit" variant="contained" disabled={problem !== null}>
              Save
            </Button>
          </DialogActions>
        </Box>
      </Dialog>
    </Box>
  );
}
