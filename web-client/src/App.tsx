/**
 * The chat screens: the people list and the open conversation side by side, or as two views with
 * a back button on a phone-width screen. Starts the session on mount and stops it on unmount.
 */
import AppBar from "@mui/material/AppBar";
import Box from "@mui/material/Box";
import CssBaseline from "@mui/material/CssBaseline";
import Divider from "@mui/material/Divider";
import Toolbar from "@mui/material/Toolbar";
import Typography from "@mui/material/Typography";
import useMediaQuery from "@mui/material/useMediaQuery";
import { ThemeProvider } from "@mui/material/styles";
import { useEffect } from "react";
import type { ChatStore } from "./store/chat";
import { AppTitle } from "./components/AppTitle";
import { ChatPane } from "./components/LazyChatPane";
import {
  ChatProvider,
  useChat,
  useChatStore,
  useSession,
  type SessionApi,
} from "./components/ChatContext";
import { ConnectionBanner } from "./components/ConnectionBanner";
import { ErrorSnackbar } from "./components/ErrorSnackbar";
import { HeaderButton, HeaderTip } from "./components/HeaderButton";
import { BellIcon } from "./components/icons";
import { NameEditor } from "./components/NameEditor";
import { UserList } from "./components/UserList";
import { useAwayWhenHidden, useDesktopNotifications, useTitleBadge } from "./hooks/usePageSignals";
import { useSystemTheme } from "./theme";

/** The session as the app drives it: the screens' calls plus its lifetime. */
export type AppSession = SessionApi & { start(): void; stop(): Promise<void> };

export function App(props: { store: ChatStore; session: AppSession }) {
  const { store, session } = props;
  const theme = useSystemTheme();

  useEffect(() => {
    session.start();
    return () => {
      void session.stop();
    };
  }, [session]);

  return (
    <ThemeProvider theme={theme}>
      <CssBaseline />
      <ChatProvider store={store} session={session}>
        <Shell />
      </ChatProvider>
    </ThemeProvider>
  );
}

function NotificationButton() {
  const store = useChatStore();
  const { state, enable } = useDesktopNotifications(store);
  if (state === "unsupported") return null;
  const label =
    state === "on"
      ? "Desktop notifications are on"
      : state === "denied"
        ? "Desktop notifications are blocked in the browser settings"
        : "Turn on desktop notifications";
  return (
    <HeaderTip title={label}>
      <span>
        <HeaderButton
          aria-label={label}
          aria-pressed={state === "on"}
          disabled={state !== "off"}
          onClick={enable}
          data-testid="notifications-button"
        >
          <BellIcon sx={{ opacity: state === "on" ? 1 : 0.6 }} />
        </HeaderButton>
      </span>
    </HeaderTip>
  );
}

function Shell() {
  const store = useChatStore();
  const session = useSession();
  const phone = useMediaQuery("(max-width:700px)", { noSsr: true });
  const openPeerId = useChat((s) => s.openPeerId);
  useTitleBadge(store);
  useAwayWhenHidden(session);

  const open = (peerId: string | null) => {
    void session.openPeer(peerId);
  };

  const list = (
    <Box sx={{ overflowY: "auto", height: "100%" }}>
      <UserList onSelect={open} />
    </Box>
  );
  const chat = openPeerId ? (
    <ChatPane
      peerId={openPeerId}
      onBack={
        phone
          ? () => {
              open(null);
            }
          : undefined
      }
    />
  ) : (
    <Box sx={{ display: "grid", placeItems: "center", height: "100%", p: 3 }}>
      <Typography color="text.secondary">Pick someone on the left to start chatting.</Typography>
    </Box>
  );

  return (
    <Box sx={{ display: "flex", flexDirection: "column", height: "100dvh" }}>
      <AppBar position="static" elevation={0}>
        <Toolbar variant="dense" sx={{ gap: 1 }}>
          <AppTitle />
          <Box sx={{ flex: 1 }} />
          <NameEditor />
          <NotificationButton />
        </Toolbar>
      </AppBar>
      <ConnectionBanner />
      <Box component="main" sx={{ display: "flex", flex: 1, minHeight: 0 }}>
        {phone ? (
          <Box sx={{ flex: 1, minWidth: 0 }}>{openPeerId ? chat : list}</Box>
        ) : (
          <>
            <Box component="nav" aria-label="People" sx={{ width: 320, flexShrink: 0 }}>
              {list}
            </Box>
            <Divider orientation="vertical" flexItem />
            <Box sx={{ flex: 1, minWidth: 0 }}>{chat}</Box>
          </>
        )}
      </Box>
      <ErrorSnackbar />
    </Box>
  );
}
