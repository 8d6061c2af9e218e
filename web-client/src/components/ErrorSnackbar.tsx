/**
 * The latest refusal not tied to a message, in words (never a raw code). The snackbar is loaded
 * with the first error (most visits have none), then stays for its closing transitions.
 */
import { lazy, Suspense, useState } from "react";
import { useChat, useChatStore } from "./ChatContext";
import { LoadBoundary } from "./LoadBoundary";

const ErrorSnackbarView = lazy(() =>
  import("./ErrorSnackbarView").then((m) => ({ default: m.ErrorSnackbarView })),
);

export function ErrorSnackbar() {
  const error = useChat((s) => s.lastError);
  const store = useChatStore();
  const [needed, setNeeded] = useState(false);
  if (error !== null && !needed) setNeeded(true);
  if (!needed) return null;
  return (
    <LoadBoundary fallback={null}>
      <Suspense fallback={null}>
        <ErrorSnackbarView
          error={error}
          onClose={() => {
            store.getState().clearError();
          }}
        />
      </Suspense>
    </LoadBoundary>
  );
}
