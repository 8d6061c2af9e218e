/**
 * Around the parts loaded on demand: should their code fail to load (the network or the server
 * is down just then), this part says so with a way to reload, or shows `fallback`, instead of
 * the whole page going blank.
 */
import Box from "@mui/material/Box";
import { Component, type ReactNode } from "react";

export class LoadBoundary extends Component<
  { children: ReactNode; fallback?: ReactNode },
  { failed: boolean }
> {
  override state = { failed: false };

  static getDerivedStateFromError(): { failed: boolean } {
    return { failed: true };
  }

  override render(): ReactNode {
    if (!this.state.failed) return this.props.children;
    if (this.props.fallback !== undefined) return this.props.fallback;
    return (
      <Box role="alert" data-testid="load-failed" sx={{ p: 3, color: "text.secondary" }}>
        This part of FastChat did not load.{" "}
        <Box
          component="button"
          type="button"
          onClick={() => {
            window.location.reload();
          }}
          sx={{
            p: 0,
            border: 0,
            bgcolor: "transparent",
            color: "primary.main",
            font: "inherit",
            textDecoration: "underline",
            cursor: "pointer",
          }}
        >
          Reload the page
        </Box>
      </Box>
    );
  }
}
