#!/bin/sh
# Builds the CLI as users run it (dist/bundle/cli): zomg-main.cjs, the whole CLI in one
# CommonJS file (Node's ESM loader was the largest single cost of a start), and zomg.cjs,
# the `bin`: a small launcher that runs zomg-main.cjs through V8's code cache
# (src/cli/launcher.ts), which it finds by the bundle's content hash.
set -eu
cd "$(dirname "$0")/.."
out=dist/bundle/cli
esbuild=node_modules/.bin/esbuild
rm -rf dist/bundle
# The bundle itself: esbuild's API, for a plugin (scripts/bundle-main.mjs says why).
node scripts/bundle-main.mjs "$out/zomg-main.cjs"
# Inside the function wrapper Node's CommonJS loader would put around it (its #! line made a
# comment, so line numbers stay), for the launcher to compile as it is: wrapping it at each
# start made V8 copy the 880 KB text once more, and cost a young-generation GC of every start.
# The launcher gets that function back; run by Node itself (`node zomg-main.cjs`), the file
# calls it, so it still runs as a program.
node -e '
const fs = require("node:fs");
const file = process.argv[1];
const text = fs.readFileSync(file, "latin1");
if (!text.startsWith("#!")) throw new Error(file + " does not start with its #! line");
const run = "(typeof require === \"function\" && typeof module === \"object\" && require.main === module ? (f) => f.call(module.exports, module.exports, require, module, __filename, __dirname) : (f) => f)";
fs.writeFileSync(file, run + "((function (exports, require, module, __filename, __dirname) {//" + text.slice(2) + "\n}))", "latin1");
' "$out/zomg-main.cjs"
hash=$(sha256sum "$out/zomg-main.cjs" | cut -c1-16)
"$esbuild" src/cli/launcher.ts --bundle --format=cjs --platform=node --target=node20 \
  --define:import.meta.url=__zomgImportMetaUrl "--define:ZOMG_BUNDLE_HASH=\"$hash\"" \
  "--banner:js=#!/usr/bin/env node
'use strict'; const __zomgImportMetaUrl = require('node:url').pathToFileURL(__filename).href;" \
  --outfile="$out/zomg.cjs" --log-level=warning
chmod +x "$out/zomg.cjs"
# The launcher decodes the bundle as latin1 (cheaper than UTF-8): esbuild escapes non-ASCII
# characters in code and --minify-whitespace drops the comments that could hold them.
if LC_ALL=C grep -q -P '[^\x00-\x7F]' "$out/zomg-main.cjs"; then
  echo "bundle.sh: $out/zomg-main.cjs is not ASCII" >&2
  exit 1
fi
