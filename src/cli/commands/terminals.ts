/** zomg console (shell) | cp | ps | logs, and the terminal behind `zomg exec -t`. */
import { lstatSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { TERMINAL_DEFAULT, type TerminalRequest } from '../../core/console-protocol.js';
import { InvalidArgumentError, ToolError, UsageError, fileNotFound } from '../../core/errors.js';
import type { BoxRef } from '../../core/refs.js';
import type { ZomgService } from '../../core/service.js';
import { isErrno } from '../../system/fs.js';
import { CommandError, run } from '../../system/run.js';
import { CP_TAR_KEEP, peekFirstType, sedReplacement } from '../../system/tarstream.js';
import type { CommandSpec } from '../command.js';
import { stderr, stdout } from '../stdio.js';
import { table } from '../render.js';

export function notATty(): InvalidArgumentError {
  return new InvalidArgumentError('the input device is not a TTY', {
    code: 'ZOMG_NOT_A_TTY',
    hint: 'run it from a terminal, or drop -t to pipe input through',
  });
}

function windowSize(): { cols: number; rows: number } {
  const out = stdout.stream();
  if (out.isTTY && out.columns > 0 && out.rows > 0) return { cols: out.columns, rows: out.rows };
  return { ...TERMINAL_DEFAULT };
}

/**
 * Runs `request` on a terminal in the box with this process's terminal attached: raw mode
 * (every key, Ctrl-C included, is a byte for the box's terminal), window size changes passed
 * on, and the terminal restored however the session ends. Resolves with the job's exit code.
 */
export async function attachTerminal(client: ZomgService, ref: BoxRef, request: Omit<TerminalRequest, 'cols' | 'rows'>): Promise<number> {
  const stdin = process.stdin;
  if (!stdin.isTTY) throw notATty();
  const session = await client.openTerminal(ref, { ...request, ...windowSize() });
  const wasRaw = stdin.isRaw;
  const restore = (): void => {
    if (stdin.isTTY && stdin.isRaw !== wasRaw) stdin.setRawMode(wasRaw);
  };
  const onInput = (chunk: Buffer): void => session.write(chunk);
  const onResize = (): void => {
    const size = windowSize();
    session.resize(size.cols, size.rows);
  };
  // The user's terminal going away, or a kill, hangs up the session in the box.
  const onHangUp = (): void => session.close();
  const onExit = (): void => restore();
  session.onData((chunk) => stdout.stream().write(chunk));
  process.on('SIGWINCH', onResize);
  process.on('SIGTERM', onHangUp);
  process.on('SIGHUP', onHangUp);
  process.on('exit', onExit);
  stdin.setRawMode(true);
  stdin.on('data', onInput);
  stdin.resume();
  try {
    return await session.exited;
  } finally {
    stdin.off('data', onInput);
    stdin.pause();
    restore();
    process.off('SIGWINCH', onResize);
    process.off('SIGTERM', onHangUp);
    process.off('SIGHUP', onHangUp);
    process.off('exit', onExit);
  }
}

// ---------------------------------------------------------------------------------------
// cp

interface BoxSide {
  box: string;
  path: string;
}

/**
 * `[project:]box:path` → the box side, anything else is local. A local path with a colon is
 * written `./a:b` (or absolute), as with docker and scp.
 */
function parseCopyArg(arg: string): BoxSide | undefined {
  if (arg === '-' || arg.startsWith('/') || arg.startsWith('.')) return undefined;
  const first = arg.indexOf(':');
  if (first <= 0) return undefined;
  const second = arg.indexOf(':', first + 1);
  const slash = arg.indexOf('/');
  if (second > 0 && (slash === -1 || second < slash)) return { box: arg.slice(0, second), path: arg.slice(second + 1) || '/' };
  return { box: arg.slice(0, first), path: arg.slice(first + 1) || '/' };
}

function lstatOrUndefined(path: string): ReturnType<typeof lstatSync> | undefined {
  try {
    return lstatSync(path);
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) return undefined;
    throw err;
  }
}

function tarError(err: unknown, what: string): unknown {
  if (err instanceof CommandError) return new ToolError('ZOMG_TAR_FAILED', `tar failed to ${what}: ${err.stderr.trim().split('\n').filter((l) => !/^tar: Exiting/.test(l)).pop() ?? ''}`, { cause: err });
  return err;
}

/** Box → local: into an existing directory, or under the name `dest` (its parent must exist). */
async function copyOut(client: ZomgService, ref: BoxRef, src: string, dest: string): Promise<void> {
  if (dest === '-') {
    await client.copyFromBox(ref, src, stdout.stream());
    return;
  }
  const target = resolve(dest);
  const st = lstatOrUndefined(target);
  let dir = target;
  const transform: string[] = [];
  if (!st?.isDirectory() && !(st?.isSymbolicLink() && lstatOrUndefined(`${target}/.`)?.isDirectory())) {
    if (!lstatOrUndefined(dirname(target))?.isDirectory()) {
      throw fileNotFound(dirname(dest), { what: 'directory' });
    }
    dir = dirname(target);
    transform.push(`--transform=s|^[^/]*|${sedReplacement(basename(target))}|S`);
  }
  const pipe = new PassThrough({ highWaterMark: 1 << 20 });
  const stop = new AbortController();
  const stopTar = new AbortController();
  const download = client.copyFromBox(ref, src, pipe, { signal: stop.signal }).then(
    () => pipe.end(),
    (err: unknown) => {
      // tar would wait for more input forever: end it.
      stopTar.abort();
      pipe.destroy();
      throw err;
    },
  );
  let input: Readable = pipe;
  if (st !== undefined && transform.length > 0) {
    // A directory never replaces a file, as with cp(1) and docker cp.
    const peeked = await peekFirstType(pipe).catch(() => ({ type: undefined, stream: pipe }));
    if (peeked.type === '5') {
      stop.abort();
      await download.catch(() => undefined);
      throw new InvalidArgumentError(`cannot copy a directory over the file "${dest}"`, { code: 'ZOMG_NOT_A_DIRECTORY', hint: 'copy into a directory instead' });
    }
    input = peeked.stream;
  }
  const extract = run('tar', ['-x', '-f', '-', '-C', dir, ...CP_TAR_KEEP, ...transform], { input, signal: stopTar.signal });
  // The download's error (a missing path in the box) says more than tar's "unexpected EOF".
  const [got, wrote] = await Promise.allSettled([download, extract]);
  if (got.status === 'rejected') throw got.reason;
  if (wrote.status === 'rejected') throw tarError(wrote.reason, 'write the files');
}

/** Local → box: the source (file, directory or symlink) as a one-entry tar stream; `-` is a tar stream on stdin. */
async function copyIn(client: ZomgService, ref: BoxRef, src: string, dest: string): Promise<void> {
  if (src === '-') {
    await client.copyToBox(ref, dest, process.stdin, { into: true });
    return;
  }
  const source = resolve(src);
  if (lstatOrUndefined(source) === undefined) {
    throw fileNotFound(src);
  }
  const pipe = new PassThrough({ highWaterMark: 1 << 20 });
  const stop = new AbortController();
  const pack = run('tar', ['-c', '-f', '-', ...CP_TAR_KEEP, '-C', dirname(source), '--', basename(source)], { stdout: pipe, signal: stop.signal, okCodes: [0, 1] }).then(
    () => pipe.end(),
    (err: unknown) => {
      pipe.destroy();
      throw err;
    },
  );
  const upload = client.copyToBox(ref, dest, pipe).catch((err: unknown) => {
    stop.abort();
    throw err;
  });
  const [sent, packed] = await Promise.allSettled([upload, pack]);
  if (sent.status === 'rejected') throw sent.reason;
  if (packed.status === 'rejected') throw tarError(packed.reason, 'read the files');
}

// ---------------------------------------------------------------------------------------

function cpuTime(seconds: number): string {
  const s = Math.floor(seconds);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

/** Runs `fn` with a signal that Ctrl-C or SIGTERM aborts (ends `logs -f` quietly). */
async function untilInterrupted(fn: (signal: AbortSignal) => Promise<void>): Promise<void> {
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    await fn(stop.signal);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

export const terminalCommands: CommandSpec[] = [
  ...(['console', 'shell'] as const).map(
    (name): CommandSpec => ({
      path: [name],
      summary: name === 'console' ? 'open a login shell in a box on a terminal (bash -l where present, else sh -l); alias: shell' : 'same as `zomg console`',
      args: ['<box>'],
      project: true,
      ...(name === 'shell' ? { hidden: true } : {}),
      options: [{ flags: '--user <user>', description: 'log in as this user of the box (HOME=/home/<user>)' }],
      async run(ctx, [box], opts) {
        const code = await attachTerminal(await ctx.client(), ctx.box(box as string), opts.user !== undefined ? { user: opts.user as string } : {});
        return { data: null, text: '', silent: true, exitCode: code };
      },
    }),
  ),
  {
    path: ['cp'],
    summary: 'copy files between a box and here: cp <box>:<path> <local> | cp <local> <box>:<path> (`-` = a tar stream on stdin/stdout)',
    args: ['<source>', '<destination>'],
    project: true,
    async run(ctx, [source, destination]) {
      const src = parseCopyArg(source as string);
      const dest = parseCopyArg(destination as string);
      if (src && dest) throw new UsageError('copying from a box to a box is not supported: copy to a local directory first');
      if (!src && !dest) throw new UsageError('one side must be in a box: zomg cp <box>:<path> <local> or zomg cp <local> <box>:<path>');
      if (source === '-' && destination === '-') throw new UsageError('only one side can be `-`');
      const client = await ctx.client();
      if (src) await copyOut(client, ctx.box(src.box), src.path, destination as string);
      else if (dest) await copyIn(client, ctx.box(dest.box), source as string, dest.path);
      return { data: null, text: '', silent: true };
    },
  },
  {
    path: ['ps'],
    summary: 'list the processes in a box (PID USER TIME COMMAND); with `-- ARGS`, run the box\'s own `ps ARGS`',
    args: ['<box>', '[ps-args...]'],
    project: true,
    async run(ctx, [box, ...rest]) {
      const args = (rest[0] as unknown as string[] | undefined) ?? [];
      const client = await ctx.client();
      const ref = ctx.box(box as string);
      if (args.length > 0) {
        const { exit_code } = await client.exec(ref, { command: ['ps', ...args] }, { stdout: stdout.stream(), stderr: stderr.stream() });
        return { data: null, text: '', silent: true, exitCode: exit_code };
      }
      const procs = await client.listProcesses(ref);
      return { data: procs, text: table(['PID', 'USER', 'TIME', 'COMMAND'], procs.map((p) => [p.pid, p.user, cpuTime(p.cpu_seconds), p.command])) };
    },
  },
  {
    path: ['logs'],
    summary: 'print the output of a background exec (`zomg exec --bg`) in a box',
    args: ['<box>'],
    project: true,
    options: [
      { flags: '--pid <pid>', description: 'the pid `zomg exec --bg` printed (required)' },
      { flags: '-l, --lines <n>', description: 'only the last n lines' },
      { flags: '-f, --follow', description: 'keep printing new output until the process ends' },
    ],
    async run(ctx, [box], opts) {
      if (opts.pid === undefined) throw new UsageError('--pid is required: zomg logs <box> --pid <pid>');
      const pid = /^\d+$/.test(opts.pid as string) ? Number(opts.pid) : Number.NaN;
      if (!Number.isInteger(pid) || pid < 1) throw new InvalidArgumentError(`invalid pid "${String(opts.pid)}"`, { code: 'ZOMG_INVALID_PID', hint: 'pass the pid `zomg exec --bg` printed' });
      let lines: number | undefined;
      if (opts.lines !== undefined) {
        if (!/^\d+$/.test(opts.lines as string)) throw new InvalidArgumentError(`invalid line count "${String(opts.lines)}"`, { code: 'ZOMG_INVALID_ARGUMENT', hint: 'pass a whole number of lines' });
        lines = Number(opts.lines);
      }
      const client = await ctx.client();
      const ref = ctx.box(box as string);
      await untilInterrupted((signal) => client.readLogs(ref, pid, stdout.stream(), { ...(lines !== undefined ? { lines } : {}), ...(opts.follow === true ? { follow: true } : {}), signal }));
      return { data: null, text: '', silent: true };
    },
  },
];
