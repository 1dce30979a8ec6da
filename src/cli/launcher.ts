/**
 * The `zomg` executable (`bin`, built into dist/bundle/cli/zomg.cjs by scripts/bundle.sh):
 * runs the CLI bundle beside it through V8's code cache, so a start neither parses the
 * bundle nor compiles the functions a command runs (measured in bench/cli-start.ts).
 *
 * A cache is V8's serialized code for the bundle, in a file named by the bundle's content
 * hash (fixed at build time): a rebuilt bundle never meets a stale cache. V8 itself rejects
 * a cache made by another Node version or other V8 flags, and then a fresh one is written.
 *
 * There is one cache per first command word that opens the engine (`cmd-diff`, for `diff
 * status` and `diff file`), and a `light` one for what opens none (help, a remote command).
 * V8 reads a whole cache back at every start: one cache shared by every command grew with
 * each command run (592 KB after create, snapshot, exec and diff), ~2 ms of a small diff
 * against the diff's own 417 KB. A cache is written, through a temporary file and a rename,
 * when there is none, when V8 rejected it, and when a command of its word is not yet among
 * those it has seen (its `.commands` file): V8 compiles a function when it is first called,
 * so a cache written after `diff file` lacks the code of `diff status`, and a diff started
 * from it would compile that code again on every run (about 60 ms of a 550 ms `zomg diff
 * status`). A cache rewritten at the end of a run keeps what it was loaded with and adds
 * what the run compiled. A directory the cache cannot be written to (a read-only install)
 * just means starts without it: nothing fails.
 */
import { existsSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { Module, createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Script } from 'node:vm';

/** The first 16 hex digits of the bundle's sha256 (defined at build time). */
declare const ZOMG_BUNDLE_HASH: string;

/**
 * What the CLI sets once a command has opened an engine (cli/main.ts): the command's words
 * ('diff status'), so the cache it leaves for that word covers that code.
 */
const ENGINE_OPENED = Symbol.for('zomg.engineOpened');

const here = dirname(fileURLToPath(import.meta.url));
const bundle = join(here, 'zomg-main.cjs');

/**
 * What names this start's caches besides the bundle: V8 rejects a cache made under other
 * flags, so a start with Node options (on its command line, `node --cpu-prof zomg.cjs`, or
 * in NODE_OPTIONS, a heap limit) keeps caches of its own (FNV-1a of the options), where
 * sharing one would have each kind of start reject and rewrite the other's. (V8's own
 * `cachedDataVersionTag()` would say exactly which options matter, but loading `node:v8`
 * costs ~3 ms of every start.)
 */
function optionsTag(execArgv: readonly string[], nodeOptions: string): string {
  const options = [...execArgv, nodeOptions.trim()].filter(Boolean).join('\0');
  if (options === '') return '';
  let h = 0x811c9dc5;
  for (const ch of options) h = Math.imul(h ^ (ch.codePointAt(0) ?? 0), 0x01000193) >>> 0;
  return `.${h.toString(16).padStart(8, '0')}`;
}
const tag = optionsTag(process.execArgv, process.env.NODE_OPTIONS ?? '');
const stem = `zomg-main.${ZOMG_BUNDLE_HASH}${tag}`;
/** `kind`: `light`, or `cmd-<first word>`. */
const cacheFor = (kind: string): string => join(here, `${stem}.${kind}.v8cache`);
/** The commands (their words) whose code a command word's cache holds, one per line. */
const commandsFor = (kind: string): string => join(here, `${stem}.${kind}.commands`);
const CACHE_NAME = /^zomg-main\.[0-9a-f]{16}\.([0-9a-f]{8})\.(cmd-[a-z0-9-]+|light)\.(v8cache|commands)$/;
/**
 * What a command nobody waits for to start sets (cli/main.ts; the server, which runs for long,
 * and the detached worker that measures sizes): it writes no cache. The server's code added
 * ~200 KB to it, ~1 ms of V8's reading it back on every start of every other command.
 */
const NO_CODE_CACHE = Symbol.for('zomg.noCodeCache');

function readIfThere(path: string): Buffer | undefined {
  try {
    return readFileSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * Runs a write or a removal of a cache file. A directory that does not take it (read-only,
 * full) or that went away meanwhile (a rebuild) is no error: the next start compiles.
 */
function tolerant(fn: () => void): void {
  try {
    fn();
  } catch (err) {
    if (!['EACCES', 'EPERM', 'EROFS', 'ENOSPC', 'EDQUOT', 'ENOENT'].includes((err as NodeJS.ErrnoException).code ?? '')) throw err;
  }
}

/** Whether process `pid` exists (EPERM: it does, as another user's). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function writeCache(path: string, data: Buffer | string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  tolerant(() => {
    for (const name of readdirSync(here)) {
      // A start killed between its write and its rename left a temporary file: its writer is gone.
      const m = /^zomg-main\..*\.(\d+)\.tmp$/.exec(name);
      if (m && !alive(Number(m[1]))) rmSync(join(here, name), { force: true });
      // One set of caches with options is kept beside the plain one: options that change from
      // start to start (a profile's directory) leave no trail of them.
      const other = CACHE_NAME.exec(name);
      if (other && tag !== '' && `.${other[1]}` !== tag) rmSync(join(here, name), { force: true });
    }
  });
  tolerant(() => {
    try {
      writeFileSync(tmp, data, { mode: 0o644 });
      renameSync(tmp, path);
    } finally {
      rmSync(tmp, { force: true });
    }
  });
}

/** A word that can be a command's first (they are short): anything else names no cache. */
const COMMAND_WORD = /^[a-z][a-z0-9-]{0,31}$/;

/**
 * The cache to start from: that of the first of the leading words that has one (global
 * options' values can come before the command word: `--token t -p web diff status`), else the
 * light one. Only the CLI's own word for what ran (ENGINE_OPENED) names a cache to write, so
 * these guesses never make a file; one that cannot be read (any error) is no cache.
 */
let kind = 'light';
let cached: Buffer | undefined;
for (const word of process.argv.slice(2).filter((a) => !a.startsWith('-')).slice(0, 6)) {
  if (!COMMAND_WORD.test(word)) continue;
  try {
    cached = readFileSync(cacheFor(`cmd-${word}`));
  } catch {
    continue;
  }
  kind = `cmd-${word}`;
  break;
}
cached ??= readIfThere(cacheFor('light'));
// The bundle is ASCII (scripts/bundle.sh checks): read as latin1, which costs a copy, where
// Node's UTF-8 decoding of the 1 MB file took ~10 ms of every start. It is already inside the
// wrapper Node's CommonJS loader puts around a file (bundle.sh).
const source = readFileSync(bundle).toString('latin1');
const script = new Script(source, {
  filename: bundle,
  ...(cached !== undefined ? { cachedData: cached } : {}),
});
const stale = cached === undefined || script.cachedDataRejected === true;
/**
 * What this run leaves as a code cache at its exit: the cache file and the commands it then
 * covers, or undefined for none. `opened` is what the CLI set as ENGINE_OPENED.
 */
function cacheToWrite(opened: unknown): { own: string; commands: string[] } | undefined {
  // Its code (a server's routes, the API's schemas) would weigh on every other start.
  if ((globalThis as Record<symbol, unknown>)[NO_CODE_CACHE] === true) return undefined;
  if (typeof opened !== 'string') return stale && kind === 'light' ? { own: 'light', commands: [] } : undefined;
  const word = opened.split(' ')[0] ?? '';
  if (!COMMAND_WORD.test(word)) return undefined;
  const own = `cmd-${word}`;
  // Started from another cache (the words before the command guessed wrong: `-p list diff
  // status`), this run's code is all a rewrite would hold: it writes only where its word has
  // no cache yet, or one was refused. Rewriting a word's cache from such runs made two of its
  // commands take turns, each rewriting it on every run.
  if (kind !== own && existsSync(cacheFor(own))) return undefined;
  const seen = kind === own && !stale ? (readIfThere(commandsFor(own))?.toString('utf8').split('\n').filter(Boolean) ?? []) : [];
  if (seen.includes(opened)) return undefined;
  return { own, commands: [...seen, opened] };
}

/**
 * node:v8, once `deferOptimization` (below) changed a V8 flag. V8 then marks a code cache with
 * other flags, which a start with its defaults would refuse: such a run writes none.
 */
let deferred: { setFlagsFromString(flags: string): void } | undefined;

process.once('exit', () => {
  // A rejected cache goes (or every start would try it first and fail again).
  if (stale && cached !== undefined) tolerant(() => rmSync(cacheFor(kind), { force: true }));
  if (deferred !== undefined) return;
  const write = cacheToWrite((globalThis as Record<symbol, unknown>)[ENGINE_OPENED]);
  if (write === undefined) return;
  writeCache(cacheFor(write.own), script.createCachedData());
  if (write.own !== 'light') writeCache(commandsFor(write.own), write.commands.join('\n') + '\n');
});

/**
 * What the CLI calls (RunContext.burst) when the rest of a command with a local engine is a
 * short burst of many small functions: a diff found by the trees' items checks and prints
 * thousands of paths in ~0.1 s. V8 compiles a function that ran a while again with TurboFan,
 * on background threads; in a process that ends this soon that work is mostly wasted, and it
 * still costs: those threads take the cores the diff and the kernel run on, and the process
 * waits at its exit for the compilations under way. TurboFan then waits for a function to run
 * 4 times as long as V8's default before it compiles it (its interrupt budget, 66 KB of
 * bytecode in Node 20). Measured in bench/README.md, "Diff, ninth round". Changing a V8 flag
 * changes the flags V8 marks a code cache with, which a start with V8's defaults refuses: a
 * run that is to write its cache (its first, or one after a rebuild) keeps the default.
 */
const INTERRUPT_BUDGET = 4 * 66 * 1024;
(globalThis as Record<symbol, unknown>)[Symbol.for('zomg.deferOptimization')] = (): void => {
  const opened = (globalThis as Record<symbol, unknown>)[ENGINE_OPENED];
  // Only with a local engine open: its built-ins are loaded by now, where V8 would take none
  // of Node's cached code for one loaded after the change (a remote client's fetch: +40 ms).
  // Nor over a budget of the user's own (`node --interrupt-budget=… zomg.cjs`; Node refuses
  // V8 flags in NODE_OPTIONS).
  if (deferred !== undefined || typeof opened !== 'string' || process.execArgv.some((a) => /^--interrupt[-_]budget(=|$)/.test(a))) return;
  // Speed only: nothing here may fail the command (a `.commands` file that cannot be read).
  try {
    if (cacheToWrite(opened) !== undefined) return;
    // Loaded here, not at the top: ~3 ms of a start when node:stream is not loaded yet.
    const v8 = createRequire(bundle)('node:v8') as { setFlagsFromString(flags: string): void };
    deferred = v8;
    v8.setFlagsFromString(`--interrupt-budget=${INTERRUPT_BUDGET}`);
  } catch {
    // The defaults, then.
  }
};

// The bundle itself cannot run as a program: what starts the CLI again (the size worker) starts this.
(globalThis as Record<symbol, unknown>)[Symbol.for('zomg.launcher')] = fileURLToPath(import.meta.url);
const mod = new Module(bundle);
mod.filename = bundle;
const run = script.runInThisContext() as (exports: unknown, require: NodeJS.Require, module: Module, filename: string, dirname: string) => void;
run.call(mod.exports, mod.exports, createRequire(bundle), mod, bundle, here);
