import react from "@vitejs/plugin-react";
import { defineConfig } from "vitest/config";

// `npm run dev` serves the client and forwards the API to a server running on :8000
// (`cargo run` in the repository root): grpc-web calls, health checks and presence JSON.
const api = { target: "http://127.0.0.1:8000", changeOrigin: false };

export default defineConfig({
  plugins: [react()],
  server: {
    proxy: {
      "/fastchat.v1.": api,
      "/grpc.health.v1.": api,
      "/health": api,
      "/presence": api,
    },
  },
  // No source maps in the served tree: they would publish the whole source.
  build: { outDir: "dist", sourcemap: false },
  test: {
    environment: "node",
    include: ["src/**/*.test.ts", "src/**/*.test.tsx"],
  },
});
