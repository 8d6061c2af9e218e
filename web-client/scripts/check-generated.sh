#!/bin/sh
# Fails when src/gen differs from what `buf generate` makes from ../proto now, or (once src/gen is
# tracked) from what git has committed. CI runs it so the generated code cannot drift.
set -eu
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
buf generate --output "$tmp"
if ! diff -r src/gen "$tmp/src/gen"; then
  echo "src/gen is out of date with ../proto: run 'npm run generate' and commit src/gen" >&2
  exit 1
fi
if git ls-files --error-unmatch src/gen >/dev/null 2>&1; then
  if ! git diff --exit-code -- src/gen || [ -n "$(git status --porcelain -- src/gen)" ]; then
    echo "src/gen has changes git has not committed: commit them" >&2
    exit 1
  fi
fi
echo "src/gen matches ../proto"
