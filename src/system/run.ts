/**
 * The one way zomg runs external programs: argv arrays (never a shell string), `LC_ALL=C`,
 * stderr captured into the error, an AbortSignal and a timeout.
 */
import { childProcess } from './builtins.js';
import type { Readable, Writable } from 'node:stream';
import { ToolError } from '../core/errors.js';

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Written to the child's stdin, then stdin is closed. */
  input?: string | Buffer | Readable;
  signal?: AbortSignal;
  timeoutMs?: number;
  /** Called with each complete line of stdout/stderr as it is produced (build logs, progress). */
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
  /** Pipe stdout here instead of buffering it. */
  stdout?: Writable;
  /**
   * Read stdout in blocks of this many bytes, through `dd bs=N iflag=fullblock` between the
   * program and us: for a program that writes a large output in small pieces (`btrfs send`
   * writes each command on its own, about 100 bytes), which would otherwise wake this
   * process once per piece. The last block is short. A failure of either program fails the
   * run (the program's own error first); the signal and the timeout end both.
   */
  stdoutBlocks?: number;
  /** Exit codes that are not failures (default: only 0). */
  okCodes?: number[];
}

export interface RunResult {
  code: number;
  stdout: Buffer;
  stderr: string;
}

/** A program ran and failed. `stderr` holds what it said. */
export class CommandError extends Error {
  constructor(
    readonly command: string,
    readonly args: readonly string[],
    readonly code: number | null,
    readonly stderr: string,
    readonly signal: NodeJS.Signals | null = null,
  ) {
    super(`${command} ${args.join(' ')} failed (${signal ?? `exit ${code}`}): ${stderr.trim().split('\n').slice(-3).join(' | ')}`);
    this.name = 'CommandError';
  }
}

const MAX_STDERR = 64 * 1024;

function lineSplitter(stream: 'stdout' | 'stderr', onLine: NonNullable<RunOptions['onLine']>): (chunk: Buffer) => void {
  let rest = '';
  return (chunk) => {
    rest += chunk.toString('utf8');
    const lines = rest.split(/\r?\n|\r/);
    rest = lines.pop() ?? '';
    for (const line of lines) onLine(line, stream);
  };
}

export function run(command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = childProcess().spawn(command, args, {
      cwd: options.cwd,
      env: { ...(options.env ?? process.env), LC_ALL: 'C' },
      // No stdin pipe unless there is input: one fewer pipe to set up and tear down per call.
      stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      signal: options.signal,
      timeout: options.timeoutMs,
    });
    // The blocking stage: dd reads the program's stdout (its own copy of the pipe; ours is
    // closed at once, so a dd that dies makes the program see EPIPE) and writes full blocks.
    const blocker = options.stdoutBlocks
      ? childProcess().spawn('dd', [`bs=${options.stdoutBlocks}`, 'iflag=fullblock', 'status=none'], {
          env: { ...process.env, LC_ALL: 'C' },
          stdio: [child.stdout as Readable, 'pipe', 'pipe'],
          signal: options.signal,
          timeout: options.timeoutMs,
        })
      : undefined;
    if (blocker) (child.stdout as Readable).destroy();
    const stdout = (blocker ?? child).stdout as Readable;
    const stderr = child.stderr as Readable;
    const out: Buffer[] = [];
    let err = '';
    const outLines = options.onLine ? lineSplitter('stdout', options.onLine) : undefined;
    const errLines = options.onLine ? lineSplitter('stderr', options.onLine) : undefined;
    if (options.stdout) stdout.pipe(options.stdout);
    else stdout.on('data', (chunk: Buffer) => {
      out.push(chunk);
      outLines?.(chunk);
    });
    stderr.on('data', (chunk: Buffer) => {
      if (err.length < MAX_STDERR) err += chunk.toString('utf8');
      errLines?.(chunk);
    });
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') {
        reject(new ToolError('ZOMG_TOOL_MISSING', `${command} is not installed`, { cause: e, hint: `install the package that provides ${command}` }));
      } else reject(e);
    });
    const input = options.input;
    if (input !== undefined && child.stdin) {
      child.stdin.on('error', () => {
        /* the child may exit before reading all input; its exit status tells what happened */
      });
      if (typeof input === 'string' || Buffer.isBuffer(input)) child.stdin.end(input);
      else input.pipe(child.stdin);
    }
    let blockerFailed: Error | undefined;
    const blockerDone = !blocker
      ? Promise.resolve()
      : new Promise<void>((done) => {
          let ddErr = '';
          blocker.stderr?.on('data', (chunk: Buffer) => {
            if (ddErr.length < MAX_STDERR) ddErr += chunk.toString('utf8');
          });
          blocker.on('error', (e) => {
            blockerFailed = e;
            done();
          });
          blocker.on('close', (code, signal) => {
            if (code !== 0) blockerFailed ??= new CommandError('dd', blocker.spawnargs.slice(1), code, ddErr, signal);
            done();
          });
        });
    child.on('close', (code, signal) => {
      void blockerDone.then(() => {
        const result = { code: code ?? -1, stdout: Buffer.concat(out), stderr: err };
        if (code === null || (code !== 0 && !options.okCodes?.includes(code))) reject(new CommandError(command, args, code, err, signal));
        else if (blockerFailed) reject(blockerFailed);
        else resolve(result);
      });
    });
  });
}

/** Runs and returns stdout as text. */
export async function runText(command: string, args: readonly string[], options: RunOptions = {}): Promise<string> {
  return (await run(command, args, options)).stdout.toString('utf8');
}

/** True when a failure was caused by a full filesystem. */
export function isNoSpace(err: unknown): boolean {
  if (err instanceof CommandError) return /No space left on device|ENOSPC/i.test(err.stderr);
  return (err as NodeJS.ErrnoException | undefined)?.code === 'ENOSPC';
}
