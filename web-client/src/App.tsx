// Placeholder: the build entry until the UI (issue 3) lands. It renders nothing on purpose.
export function App() {
  return null;
}
