#!/usr/bin/env node
/**
 * The `zomg` entry: parse → dispatch → render → exit code, with one catch. Commands come
 * from the registry; the client is the in-process engine (local) or the HTTP API (remote).
 */
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, Option } from 'commander';
import { UsageError, isZomgError } from '../core/errors.js';
import { childProcess } from '../system/builtins.js';
import { parseBoxRef } from '../core/refs.js';
import type { ZomgService } from '../core/service.js';
import type { Progress } from '../core/types.js';
import type { CommandSpec, Output, RunContext } from './command.js';
import { exitCodeOf } from './exit-codes.js';
import { fallbackHint } from './hints.js';
import { GLOBAL_OPTIONS, commandWords, parseFlags, splitPassThrough } from './globals.js';
import { progressOnFirstReport } from './progress.js';
import { registry } from './registry.js';
import { json } from './render.js';
import { isOutputClosed, outputClosed, stderr, stdout } from './stdio.js';
import { type GlobalFlags, resolveProject, resolveTarget } from './settings.js';

/** What starts the CLI again: the launcher when it runs the bundle (cli/launcher.ts), else this file. */
const MAIN = ((globalThis as Record<symbol, unknown>)[Symbol.for('zomg.launcher')] as string | undefined) ?? fileURLToPath(import.meta.url);
const VERSION = '0.1.0';
/** 128 + SIGPIPE: what a shell reports for a program whose output's reader went away. */
const EXIT_OUTPUT_CLOSED = 141;

function makeContext(flags: GlobalFlags, progress: (p: Progress) => void, opened: ZomgService[], spec: CommandSpec): RunContext {
  let client: Promise<ZomgService> | undefined;
  const ctx: RunContext = {
    flags,
    target: () => resolveTarget(flags, process.env),
    project: () => resolveProject(flags, process.env),
    box(value) {
      const parsed = parseBoxRef(value, { project: ctx.project(), currentProject: process.env.ZOMG_PROJECT, currentBox: process.env.BOX_NAME });
      if (parsed.kind === 'ephemeral') throw new UsageError('"-" (an ephemeral box) is only valid for exec', { hint: 'name a box, e.g. `zomg list` shows yours' });
      return parsed.ref;
    },
    progress,
    burst() {
      // A remote diff loads the HTTP client's built-ins while its changes arrive, and V8 takes
      // none of Node's cached code for built-ins after a flag changed: only a local engine.
      if (ctx.target().mode !== 'local') return;
      // Run by the launcher (not by `node zomg-main.cjs`, nor in tests): the hook is there.
      ((globalThis as Record<symbol, unknown>)[Symbol.for('zomg.deferOptimization')] as (() => void) | undefined)?.();
    },
    client() {
      client ??= (async () => {
        const target = ctx.target();
        let service: ZomgService;
        if (target.mode === 'remote') {
          const { RemoteClient } = await import('./remote.js');
          service = new RemoteClient(target.url, target.token);
        } else {
          const { createEngine } = await import('../engine/engine.js');
          let spawned = false;
          const reconcile = spec.reconcile ?? 'if-needed';
          service = await createEngine({
            stateDir: target.stateDir,
            reconcile,
            ...(reconcile === 'always' ? { repairEveryMs: 30_000 } : {}),
            ...(process.env.ZOMG_POOL_PATH ? { poolPath: process.env.ZOMG_POOL_PATH } : {}),
            // What boxes get as ZOMG_API_URL: the server's address (`zomg serve` sets it), else the default one.
            ...(process.env.ZOMG_BOX_API_URL ? { apiUrl: process.env.ZOMG_BOX_API_URL } : {}),
            // In order with the rest of the CLI's output (cli/stdio.ts).
            onWarning: (message) => stderr.write(`warning: ${message}\n`),
            // A CLI process exits right after its command: sizes are measured by a detached worker.
            onSizesPending: () => {
              if (spawned || process.env.ZOMG_NO_SIZE_WORKER === '1') return;
              spawned = true;
              childProcess().spawn(process.execPath, [MAIN, '__compute-sizes', '--state-dir', target.stateDir], { detached: true, stdio: 'ignore' }).unref();
            },
          });
        }
        opened.push(service);
        // The launcher keeps a code cache for this command's first word, covering the engine's code it ran (cli/launcher.ts).
        if (target.mode === 'local') (globalThis as Record<symbol, unknown>)[Symbol.for('zomg.engineOpened')] = spec.path.join(' ');
        return service;
      })();
      return client;
    },
  };
  return ctx;
}

/** A global option for one command: without the names the command's own options already use. */
function globalOptionFor(spec: CommandSpec, flags: string, description: string): Option | undefined {
  const taken = new Set((spec.options ?? []).flatMap((o) => parseFlags(o.flags).names));
  const { names } = parseFlags(flags);
  const free = names.filter((n) => !taken.has(n));
  if (free.length === 0 || !free.some((n) => n.startsWith('--'))) return undefined;
  const value = /\s(<[^>]+>|\[[^\]]+\])/.exec(flags)?.[1];
  return new Option(`${free.join(', ')}${value ? ` ${value}` : ''}`, description).helpGroup('Global options:');
}

interface CliState {
  result?: Output;
  flags?: GlobalFlags;
  /** --json was asked for: a parse error goes to stdout as `{"error": …}` like any other. */
  usageAsJson: boolean;
  usage?: { message: string; hint: string };
}

/** A parse error from commander: with its hint on stderr, or kept for the JSON error. */
function usageError(state: CliState, text: string, hint: string, write: (s: string) => void): void {
  if (state.usageAsJson) state.usage = { message: text.trim().replace(/^error: /, ''), hint };
  else write(`${text}hint: ${hint}\n`);
}

function addCommand(program: Command, spec: CommandSpec, state: CliState): void {
  let parent = program;
  for (const word of spec.path.slice(0, -1)) {
    let group = parent.commands.find((c) => c.name() === word);
    if (!group) {
      group = parent.command(word).description(`${word} commands`);
      // `zomg base --json list` too: global options are welcome between the words.
      for (const g of GLOBAL_OPTIONS) group.addOption(new Option(g.flags, g.description).helpGroup('Global options:'));
    }
    parent = group;
  }
  const cmd = parent.command(spec.path.at(-1) as string, { hidden: spec.hidden === true }).description(spec.summary);
  for (const arg of spec.args ?? []) cmd.argument(arg);
  for (const opt of spec.options ?? []) {
    const o = new Option(opt.flags, opt.description);
    if (opt.repeatable) o.argParser((value: string, prev: string[] | undefined) => [...(prev ?? []), value]);
    cmd.addOption(o);
  }
  for (const g of GLOBAL_OPTIONS) {
    const o = globalOptionFor(spec, g.flags, g.description);
    if (o) cmd.addOption(o);
  }
  cmd.configureOutput({
    outputError: (text, write) => usageError(state, text, `run \`zomg ${spec.path.join(' ')} --help\` for its usage`, write),
  });
  cmd.action(async (...params: unknown[]) => {
    // The launcher (cli/launcher.ts) then leaves its code cache as it found it.
    if (spec.codeCache === false) (globalThis as Record<symbol, unknown>)[Symbol.for('zomg.noCodeCache')] = true;
    const command = params.at(-1) as Command;
    const own = command.opts<Record<string, unknown>>();
    // Global options may come before the command words (the program's) or after (the command's).
    const opts = command.optsWithGlobals<Record<string, unknown>>();
    const args = params.slice(0, spec.args?.length ?? 0) as string[];
    const flags: GlobalFlags = {
      ...(opts.url !== undefined ? { url: opts.url as string } : {}),
      ...(opts.profile !== undefined ? { profile: opts.profile as string } : {}),
      ...(opts.token !== undefined ? { token: opts.token as string } : {}),
      ...(opts.stateDir !== undefined ? { stateDir: opts.stateDir as string } : {}),
      ...(opts.project !== undefined ? { project: opts.project as string } : {}),
      json: opts.json === true,
    };
    if (spec.engine !== false && flags.profile === undefined && !process.env.ZOMG_PROFILE) {
      const { configPath, readConfig } = await import('./config.js');
      const { existsSync } = await import('node:fs');
      const path = configPath(process.env);
      if (existsSync(path)) {
        const profile = (await readConfig(path)).profile;
        if (profile) flags.configProfile = profile;
      }
    }
    state.flags = flags;
    const progress = progressOnFirstReport(flags.json === true);
    const opened: ZomgService[] = [];
    let completed = false;
    try {
      const ctx = makeContext(flags, progress.fn, opened, spec);
      const result = await spec.run(ctx, args, { ...opts, ...own });
      if (result) state.result = result;
      completed = true;
    } finally {
      progress.done(completed);
      for (const s of opened) await s.close();
    }
  });
}

/**
 * The commands to declare to the parser: only those the first words can name (building all
 * of them is a measurable part of start-up), or all when the words name none (help, typos).
 */
function relevantSpecs(argv: string[]): CommandSpec[] {
  const words = commandWords(argv);
  // A spec matches when the words given so far are its first words (`data diff` also names `data diff file`).
  const matching = registry.filter((spec) => spec.path.slice(0, words.length).every((w, i) => words[i] === w));
  return matching.length > 0 ? matching : registry;
}

export async function main(argv: string[]): Promise<number> {
  const program = new Command('zomg')
    .description('Linux boxes on btrfs: writable clones of read-only bases, O(1) snapshots and restores, fast diffs')
    .version(VERSION, '-V, --version', "print zomg's version")
    // Options after a command word belong to that command: `base delete --version V` is not the program's --version.
    .enablePositionalOptions()
    .exitOverride()
    .configureOutput({
      writeErr: (s) => stderr.write(s),
      writeOut: (s) => stdout.write(s),
      outputError: (text, write) => usageError(state, text, 'run `zomg --help` to see the commands and global options', write),
    });
  for (const g of GLOBAL_OPTIONS) program.addOption(new Option(g.flags, g.description));
  const state: CliState = { usageAsJson: argv.some((a) => a === '--json' || a === '-j') };
  const specs = relevantSpecs(argv);
  for (const spec of specs) addCommand(program, spec, state);
  program.commands.forEach(function exit(c: Command): void {
    c.exitOverride();
    c.commands.forEach(exit);
  });
  try {
    const only = specs.length === 1 ? specs[0] : undefined;
    await program.parseAsync(only?.passThrough ? splitPassThrough(argv, only) : argv, { from: 'user' });
    const result = state.result;
    const asJson = state.flags?.json === true;
    if (result && result.stderr && !asJson) stderr.write(`${result.stderr}\n`);
    if (result && (!result.silent || (asJson && result.data !== undefined && result.data !== null))) stdout.write(`${asJson ? json(result.data) : result.text}\n`);
    return outputClosed() ? EXIT_OUTPUT_CLOSED : (result?.exitCode ?? 0);
  } catch (err) {
    // The reader of the output went away (`zomg diff status web | head`): nothing to say, and
    // the status a program killed by SIGPIPE gets in a shell.
    if (isOutputClosed(err) || outputClosed()) return EXIT_OUTPUT_CLOSED;
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return 0;
      if (state.usage) stdout.write(`${json({ error: { code: 'ZOMG_USAGE', ...state.usage } })}\n`);
      return 2;
    }
    return reportError(err, state.flags?.json === true || (state.flags === undefined && argv.some((a) => a === '--json' || a === '-j')), specs.length === 1 ? specs[0]?.path : undefined);
  }
}

function reportError(err: unknown, asJson: boolean, command: string[] | undefined): number {
  if (isZomgError(err)) {
    const hint = err.hint ?? fallbackHint(err.kind, command);
    if (asJson) stdout.write(`${json({ error: { code: err.code, message: err.message, hint } })}\n`);
    else stderr.write(`error: ${err.message}\nhint: ${hint}\n`);
    return exitCodeOf(err);
  }
  const message = err instanceof Error ? err.message : String(err);
  const hint = fallbackHint('internal', command);
  if (asJson) stdout.write(`${json({ error: { code: 'ZOMG_INTERNAL', message, hint } })}\n`);
  else stderr.write(`error: internal error: ${message}\nhint: ${hint}\n`);
  if (process.env.ZOMG_DEBUG) stderr.write(`${err instanceof Error ? err.stack : ''}\n`);
  return 1;
}

// Output handed to Node's stream can fail after the command returned (its reader left meanwhile).
process.once('exit', () => {
  if (outputClosed()) process.exitCode = EXIT_OUTPUT_CLOSED;
});
main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    // An error report that met a closed output itself.
    if (isOutputClosed(err)) {
      process.exitCode = EXIT_OUTPUT_CLOSED;
      return;
    }
    process.stderr.write(`error: ${String(err)}\n`);
    process.exitCode = 1;
  },
);
