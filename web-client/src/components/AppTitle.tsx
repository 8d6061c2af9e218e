/**
 * The app's name with the total unread count beside it (not over it): a pill in the error
 * colour, whose text MUI picks for 4.5:1, and words for screen readers.
 */
import Box from "@mui/material/Box";
import Typography from "@mui/material/Typography";
import { visuallyHidden } from "../lib/a11y";
import { useChat } from "./ChatContext";

export function AppTitle() {
  const total = useChat((s) =>
    Object.values(s.conversations)
      .filter((c) => c.peerId !== s.self.userId)
      .reduce((sum, c) => sum + c.unread, 0),
  );
  return (
    <Box sx={{ display: "flex", alignItems: "center", gap: 1, minWidth: 0 }}>
      <Typography variant="h6" component="h1" noWrap>
        FastChat
      </Typography>
      {total > 0 ? (
        <Box
          component="span"
          data-testid="total-unread"
          data-count={total}
          sx={{
            minWidth: 22,
            height: 22,
            px: 0.75,
            borderRadius: 11,
            bgcolor: "error.main",
            color: "error.contrastText",
            fontSize: 13,
            fontWeight: 700,
            lineHeight: "22px",
            textAlign: "center",
            flexShrink: 0,
          }}
        >
          <span aria-hidden="true">{total > 99 ? "99+" : total}</span>
          <Box component="span" sx={visuallyHidden}>
            {total === 1 ? "1 unread message" : `${total} unread messages`}
          </Box>
        </Box>
      ) : null}
    </Box>
  );
}
