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
  external: ['fastify', '@fastify/*', 'ws', 'yaml', 'diff', 'cli-progress'],
  define: { 'import.meta.url': '__zomgImportMetaUrl' },
  banner: { js: "'use strict'; const __zomgImportMetaUrl = require('node:url').pathToFileURL(__filename).href;" },
  outfile,
  logLevel: 'warning',
  plugins: [lazyChildProcess],
});
