// Writes a brotli (.br) and a gzip (.gz) copy beside every text file of the build, where it is
// smaller, so the server sends them precompressed (at the strongest levels, paid once here)
// to browsers that accept them. Run by `npm run build` after `vite build`.
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { brotliCompressSync, constants, gzipSync } from "node:zlib";

const dist = new URL("../dist/", import.meta.url).pathname;
const compressible = /\.(html|js|css|svg|json|txt|map)$/;

function* files(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* files(path);
    else if (compressible.test(name)) yield path;
  }
}

for (const path of files(dist)) {
  const original = readFileSync(path);
  const brotli = brotliCompressSync(original, {
    params: {
      [constants.BROTLI_PARAM_QUALITY]: constants.BROTLI_MAX_QUALITY,
      [constants.BROTLI_PARAM_SIZE_HINT]: original.length,
    },
  });
  const gzip = gzipSync(original, { level: 9 });
  if (brotli.length < original.length) writeFileSync(`${path}.br`, brotli);
  if (gzip.length < original.length) writeFileSync(`${path}.gz`, gzip);
}
