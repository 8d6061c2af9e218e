// The build entry until the chat UI (issue 3) lands: it says so instead of showing a blank page.
export function App() {
  return (
    <main style={{ fontFamily: "system-ui, sans-serif", maxWidth: "40rem", margin: "3rem auto" }}>
      <h1>FastChat</h1>
      <p>
        The server is running. The chat screens of this web client are not built yet; until they
        are, chat with grpcurl or a generated client (see the README).
      </p>
    </main>
  );
}
