/** "3 unread messages": a line above the first message that was unread when the chat opened. */
import Divider from "@mui/material/Divider";
import type { Ref } from "react";
import { unreadLabel } from "../lib/unread";

export function UnreadDivider({ count, ref }: { count: number; ref?: Ref<HTMLDivElement> }) {
  return (
    <Divider
      component="div"
      ref={ref}
      data-testid="unread-divider"
      sx={{
        my: 1,
        mx: 2,
        typography: "caption",
        fontWeight: 700,
        color: "error.main",
        "&::before, &::after": { borderColor: "error.main" },
      }}
    >
      {unreadLabel(count)}
    </Divider>
  );
}
