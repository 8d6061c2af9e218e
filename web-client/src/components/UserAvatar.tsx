/**
 * A person's avatar: their initials on their colour (lib/avatar.ts), in the list and the header,
 * with an optional presence dot. A plain circle rather than MUI's Avatar and Badge: the people
 * list is on the first screen, whose JavaScript is kept small.
 */
import Box from "@mui/material/Box";
import { useTheme } from "@mui/material/styles";
import { avatarColors, initials } from "../lib/avatar";
import type { PresenceKind } from "../store/chat";

const PRESENCE_COLOR: Record<PresenceKind, string> = {
  online: "success.main",
  away: "warning.main",
  offline: "grey.500",
};

export function UserAvatar(props: {
  userId: string;
  name: string;
  size?: number;
  /** Shows a presence dot at the bottom right. */
  presence?: PresenceKind;
}) {
  const mode = useTheme().palette.mode;
  const { background, color } = avatarColors(props.userId, mode);
  const size = props.size ?? 40;
  return (
    <Box
      aria-hidden
      sx={{ position: "relative", flexShrink: 0, width: size, height: size }}
      data-testid={`avatar-${props.userId}`}
    >
      <Box
        sx={{
          width: size,
          height: size,
          borderRadius: "50%",
          display: "flex",
          alignItems: "center",
          justifyContent: "center",
          bgcolor: background,
          color,
          fontSize: size * 0.4,
          fontWeight: 600,
          lineHeight: 1,
          userSelect: "none",
        }}
      >
        {initials(props.name)}
      </Box>
      {props.presence ? (
        <Box
          data-testid={`presence-${props.userId}`}
          data-presence={props.presence}
          sx={{
            position: "absolute",
            right: 0,
            bottom: 0,
            width: 12,
            height: 12,
            borderRadius: "50%",
            bgcolor: PRESENCE_COLOR[props.presence],
            boxShadow: (t) => `0 0 0 2px ${t.palette.background.paper}`,
          }}
        />
      ) : null}
    </Box>
  );
}
