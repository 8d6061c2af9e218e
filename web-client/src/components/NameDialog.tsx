/** The dialog that changes your name (loaded when first opened: see NameEditor). */
import Box from "@mui/material/Box";
import Button from "@mui/material/Button";
import Dialog from "@mui/material/Dialog";
import DialogActions from "@mui/material/DialogActions";
import DialogContent from "@mui/material/DialogContent";
import DialogTitle from "@mui/material/DialogTitle";
import TextField from "@mui/material/TextField";
import { nameProblem } from "../lib/names";

export function NameDialog(props: {
  draft: string;
  onChange: (draft: string) => void;
  onSave: () => void;
  onCancel: () => void;
}) {
  const problem = nameProblem(props.draft);
  return (
    <Dialog open onClose={props.onCancel}>
      <Box
        component="form"
        onSubmit={(event) => {
          event.preventDefault();
          props.onSave();
        }}
      >
        <DialogTitle>Your name</DialogTitle>
        <DialogContent>
          <TextField
            autoFocus
            fullWidth
            margin="dense"
            label="Name others see"
            value={props.draft}
            onChange={(event) => {
              props.onChange(event.target.value);
            }}
            error={problem !== null}
            helperText={problem ?? " "}
            slotProps={{ htmlInput: { "data-testid": "rename-input" } }}
          />
        </DialogContent>
        <DialogActions>
          <Button onClick={props.onCancel}>Cancel</Button>
          <Button type="submit" variant="contained" disabled={problem !== null}>
            Save
          </Button>
        </DialogActions>
      </Box>
    </Dialog>
  );
}
