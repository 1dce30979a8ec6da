// The CLI bundle (dist/bundle/cli/zomg-main.cjs), built by scripts/bundle.sh: esbuild's API
// rather than its command line, for one plugin. commander requires node:child_process at
// its top for the executable subcommands zomg never declares, and that module loads net and
// dgram: ~3.5 ms of every start (~1.2 ms when stdout is a pipe, which loads net anyway).
// commander gets a stand-in that loads child_process on first use instead.
import { build } from 'esbuild';

const [outfile] = process.argv.slice(2);

/** @type {import('esbuild').Plugin} */
const lazyChildProcess = {
  name: 'lazy-child-process',
  setup(b) {
    b.onResolve({ filter: /^(node:)?child_process$/ }, (args) =>
      /[/\\]node_modules[/\\]commander[/\\]/.test(args.importer) ? { path: 'child_process', namespace: 'zomg-lazy' } : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'zomg-lazy' }, () => ({
      contents: "let loaded; module.exports = new Proxy({}, { get: (_, key) => (loaded ??= require('node:child_process'))[key] });",
      loader: 'js',
    }));
  },
};

await build({
  entryPoints: ['src/cli/main.ts'],
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  // Dynamic import() inside the bundle becomes require(): the launcher compiles the bundle
  // with vm.Script, which has no loader for import(), and require() of a builtin or of a
  // package with a CommonJS entry is also cheaper than booting the ESM loader.
  supported: { 'dynamic-import': false },
  minifyWhitespace: true,
  // Left to node_modules: what only some commands load. The server's libraries (fastify,
  // TypeBox: 240 KB, a third of the bundle) load with `zomg serve`; in the bundle they cost
  // every other command V8's reading back their part of the code cache (~4 ms of a diff).
  external: ['fastify', '@fastify/*', '@sinclair/typebox', 'ws', 'yaml', 'diff', 'cli-progress'],
  define: { 'import.meta.url': '__zomgImportMetaUrl' },
  banner: { js: "'use strict'; const __zomgImportMetaUrl = require('node:url').pathToFileURL(__filename).href;" },
  outfile,
  logLevel: 'warning',
  plugins: [lazyChildProcess],
});
