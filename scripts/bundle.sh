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
hash=$(sha256sum "$out/zomg-main.cjs" | cut -c1-16)
# The launcher's shebang starts Node with a young generation of 16 MiB from the start (V8
# begins at 1 MiB and grows it): a diff of a package install then runs no garbage
# collection at all, where it ran 9 scavenges (~16 ms, `node --trace-gc`), and a small diff
# none instead of 3. The flag must be on Node's command line (V8 sizes the heap once, at
# start); `env -S` (coreutils >= 8.30) splits the line into arguments.
"$esbuild" src/cli/launcher.ts --bundle --format=cjs --platform=node --target=node20 \
  --define:import.meta.url=__zomgImportMetaUrl "--define:ZOMG_BUNDLE_HASH=\"$hash\"" \
  "--banner:js=#!/usr/bin/env -S node --min-semi-space-size=16
'use strict'; const __zomgImportMetaUrl = require('node:url').pathToFileURL(__filename).href;" \
  --outfile="$out/zomg.cjs" --log-level=warning
chmod +x "$out/zomg.cjs"
# The launcher decodes the bundle as latin1 (cheaper than UTF-8): esbuild escapes non-ASCII
# characters in code and --minify-whitespace drops the comments that could hold them.
if LC_ALL=C grep -q -P '[^\x00-\x7F]' "$out/zomg-main.cjs"; then
  echo "bundle.sh: $out/zomg-main.cjs is not ASCII" >&2
  exit 1
fi
