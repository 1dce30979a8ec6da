#!/usr/bin/env node
/**
 * The `zomg` entry: parse → dispatch → render → exit code, with one catch. Commands come
 * from the registry; the client is the in-process engine (local) or the HTTP API (remote).
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, Option } from 'commander';
import { UsageError, isZomgError } from '../core/errors.js';
import { parseBoxRef } from '../core/refs.js';
import type { ZomgService } from '../core/service.js';
import type { Progress } from '../core/types.js';
import type { CommandSpec, Output, RunContext } from './command.js';
import { exitCodeOf } from './exit-codes.js';
import { registry } from './registry.js';
import { json } from './render.js';
import { type GlobalFlags, resolveProject, resolveTarget } from './settings.js';

const MAIN = fileURLToPath(import.meta.url);
const VERSION = '0.1.0';

function progressRenderer(enabled: boolean): { fn: (p: Progress) => void; done(): void } {
  if (!enabled) return { fn: () => undefined, done: () => undefined };
  let last = '';
  let drawn = false;
  const clear = (): void => {
    if (drawn) process.stderr.write('\r\x1b[K');
    drawn = false;
  };
  return {
    fn(p) {
      if (p.line !== undefined) {
        clear();
        process.stderr.write(`${p.line}\n`);
        return;
      }
      let text = p.phase;
      if (p.total !== undefined && p.done !== undefined && p.total > 0) {
        const ratio = Math.min(1, p.done / p.total);
        const width = 30;
        const filled = Math.round(ratio * width);
        text = `${p.phase.padEnd(10)} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(ratio * 100).toFixed(0).padStart(3)}%`;
      }
      if (text === last) return;
      last = text;
      process.stderr.write(`\r\x1b[K${text}`);
      drawn = true;
    },
    done: clear,
  };
}

function makeContext(flags: GlobalFlags, progress: (p: Progress) => void, opened: ZomgService[], spec: CommandSpec): RunContext {
  let client: Promise<ZomgService> | undefined;
  const ctx: RunContext = {
    flags,
    target: () => resolveTarget(flags, process.env),
    project: () => resolveProject(flags, process.env),
    box(value) {
      const parsed = parseBoxRef(value, { project: ctx.project(), currentProject: process.env.ZOMG_PROJECT, currentBox: process.env.BOX_NAME });
      if (parsed.kind === 'ephemeral') throw new UsageError('"-" (an ephemeral box) is only valid for exec');
      return parsed.ref;
    },
    progress,
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
            // A CLI process exits right after its command: sizes are measured by a detached worker.
            onSizesPending: () => {
              if (spawned || process.env.ZOMG_NO_SIZE_WORKER === '1') return;
              spawned = true;
              spawn(process.execPath, [MAIN, '__compute-sizes', '--state-dir', target.stateDir], { detached: true, stdio: 'ignore' }).unref();
            },
          });
        }
        opened.push(service);
        return service;
      })();
      return client;
    },
  };
  return ctx;
}

function addCommand(program: Command, spec: CommandSpec, state: { result?: Output; flags?: GlobalFlags }): void {
  let parent = program;
  for (const word of spec.path.slice(0, -1)) {
    parent = parent.commands.find((c) => c.name() === word) ?? parent.command(word).description(`${word} commands`);
  }
  const cmd = parent.command(spec.path.at(-1) as string, { hidden: spec.hidden === true }).description(spec.summary);
  for (const arg of spec.args ?? []) cmd.argument(arg);
  for (const opt of spec.options ?? []) {
    const o = new Option(opt.flags, opt.description);
    if (opt.repeatable) o.argParser((value: string, prev: string[] | undefined) => [...(prev ?? []), value]);
    cmd.addOption(o);
  }
  if (spec.project) cmd.option('-p, --project <project>', 'project (default: $ZOMG_PROJECT, the git repository name, or "default")');
  if (spec.engine !== false) {
    cmd.option('--url <url>', 'API URL of a zomg server (else the local engine)');
    cmd.option('--profile <name>', 'profile: uses ZOMG_PROFILE_<NAME>_URL and _TOKEN');
    cmd.option('--token <token>', 'bearer token for --url');
    if (!spec.options?.some((o) => o.flags.includes('--state-dir'))) cmd.option('--state-dir <dir>', 'state directory of the local engine (default $ZOMG_HOME or /var/lib/zomg)');
  }
  cmd.option('-j, --json', 'print JSON');
  cmd.action(async (...params: unknown[]) => {
    const command = params.at(-1) as Command;
    const opts = command.opts<Record<string, unknown>>();
    const args = params.slice(0, spec.args?.length ?? 0).map((a) => a as string);
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
    const progress = progressRenderer(!flags.json && process.stderr.isTTY === true);
    const opened: ZomgService[] = [];
    try {
      const ctx = makeContext(flags, progress.fn, opened, spec);
      const result = await spec.run(ctx, args, opts);
      if (result) state.result = result;
    } finally {
      progress.done();
      for (const s of opened) await s.close();
    }
  });
}

/**
 * The commands to declare to the parser: only those the first words can name (building all
 * of them is a measurable part of start-up), or all when the words name none (help, typos).
 */
function relevantSpecs(argv: string[]): CommandSpec[] {
  const words = argv.filter((a) => !a.startsWith('-')).slice(0, 2);
  // A spec matches when the words given so far are its first words (`data diff` also names `data diff file`).
  const matching = registry.filter((spec) => spec.path.slice(0, words.length).every((w, i) => words[i] === w));
  return matching.length > 0 ? matching : registry;
}

export async function main(argv: string[]): Promise<number> {
  const program = new Command('zomg')
    .description('Linux boxes on btrfs: writable clones of read-only bases, O(1) snapshots and restores, fast diffs')
    .version(VERSION, '-V, --version')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s), writeOut: (s) => process.stdout.write(s) });
  const state: { result?: Output; flags?: GlobalFlags } = {};
  for (const spec of relevantSpecs(argv)) addCommand(program, spec, state);
  program.commands.forEach(function exit(c: Command): void {
    c.exitOverride();
    c.commands.forEach(exit);
  });
  try {
    await program.parseAsync(argv, { from: 'user' });
    const result = state.result;
    if (result && !result.silent) process.stdout.write(`${state.flags?.json ? json(result.data) : result.text}\n`);
    return result?.exitCode ?? 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return 0;
      return 2;
    }
    return reportError(err, state.flags?.json === true);
  }
}

function reportError(err: unknown, asJson: boolean): number {
  if (isZomgError(err)) {
    if (asJson) process.stdout.write(`${json({ error: { code: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}) } })}\n`);
    else process.stderr.write(`error: ${err.message}\n${err.hint ? `hint: ${err.hint}\n` : ''}`);
    return exitCodeOf(err);
  }
  const message = err instanceof Error ? err.message : String(err);
  if (asJson) process.stdout.write(`${json({ error: { code: 'ZOMG_INTERNAL', message } })}\n`);
  else process.stderr.write(`error: internal error: ${message}\n`);
  if (process.env.ZOMG_DEBUG) process.stderr.write(`${err instanceof Error ? err.stack : ''}\n`);
  return 1;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`error: ${String(err)}\n`);
    process.exitCode = 1;
  },
);
