/**
 * Your name (the friendly random one at first), with a dialog to change it. The dialog and its
 * text field are loaded when it is first opened: the first screen does not need them.
 */
import Box from "@mui/material/Box";
import Typography from "@mui/material/Typography";
import { lazy, Suspense, useState } from "react";
import { nameProblem } from "../lib/names";
import { useChat, useSession } from "./ChatContext";
import { HeaderButton } from "./HeaderButton";
import { EditIcon } from "./icons";
import { LoadBoundary } from "./LoadBoundary";

const NameDialog = lazy(() => import("./NameDialog").then((m) => ({ default: m.NameDialog })));

export function NameEditor() {
  const name = useChat((s) => s.self.displayName);
  const session = useSession();
  const [draft, setDraft] = useState<string | null>(null);

  const save = () => {
    if (draft === null || nameProblem(draft)) return;
    const next = draft.trim();
    setDraft(null);
    if (next !== name) session.rename(next);
  };
  const cancel = () => {
    setDraft(null);
  };

  return (
    <Box sx={{ display: "flex", alignItems: "center", minWidth: 0 }}>
      <Typography noWrap data-testid="self-name" title="Your name">
        {name}
      </Typography>
      <HeaderButton
        aria-label="Change your name"
        data-testid="rename-button"
        onClick={() => {
          setDraft(name);
        }}
      >
        <EditIcon fontSize="small" />
      </HeaderButton>
      {draft !== null ? (
        <LoadBoundary fallback={null}>
          <Suspense fallback={null}>
            <NameDialog draft={draft} onChange={setDraft} onSave={save} onCancel={cancel} />
          </Suspense>
        </LoadBoundary>
      ) : null}
    </Box>
  );
}
