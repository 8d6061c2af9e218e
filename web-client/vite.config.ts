import react from "@vitejs/plugin-react";
import type { Plugin } from "vite";
import { defineConfig } from "vitest/config";

// `npm run dev` serves the client and forwards the API to a server running on :8000
// (`cargo run` in the repository root): grpc-web calls, health checks and presence JSON.
const api = { target: "http://127.0.0.1:8000", changeOrigin: false };

/**
 * Leaves protobuf's JSON codec out of the built client. The client speaks grpc-web in the binary
 * format only (api/transport.ts sets useBinaryFormat), but Connect's serializers import the JSON
 * functions for transports that use JSON, which kept about 9 kB gzipped of dead code on the
 * first screen (see BENCHMARKS.md, "Web client first load"). In the build, @bufbuild/protobuf's
 * from-json and to-json modules become stubs that throw if anything ever calls them; tests and
 * `npm run dev` keep the real ones.
 */
function withoutProtobufJson(): Plugin {
  const stubs: Record<string, string[]> = {
    "./from-json.js": [
      "fromJson",
      "fromJsonString",
      "mergeFromJson",
      "mergeFromJsonString",
      "enumFromJson",
      "isEnumJson",
    ],
    "./to-json.js": ["toJson", "toJsonString", "enumToJson"],
  };
  const prefix = "\0protobuf-json-stub:";
  return {
    name: "fastchat:without-protobuf-json",
    apply: "build",
    enforce: "pre",
    resolveId(source, importer) {
      if (!importer?.includes("/@bufbuild/protobuf/dist/esm/") || !(source in stubs)) return null;
      return prefix + source;
    },
    load(id) {
      if (!id.startsWith(prefix)) return null;
      const names = stubs[id.slice(prefix.length)] ?? [];
      return names
        .map(
          (name) =>
            `export function ${name}() { throw new Error("protobuf JSON (${name}) is left out of ` +
            `the FastChat web build: the client uses the binary format (vite.config.ts)"); }`,
        )
        .join("\n");
    },
  };
}

export default defineConfig({
  plugins: [react(), withoutProtobufJson()],
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
