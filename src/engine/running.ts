/**
 * Running boxes, through the BoxRuntime (runtime/runtime.ts): stop and resume (under the
 * box's lock, withBox), and exec — streamed, or detached in the background (`--bg`). An exec
 * takes no lock: it needs a running box, and a stopped one is ZOMG_BOX_STOPPED. EnterGuard
 * tells the entry program's own failure from the command's.
 */
import { type Readable, Writable } from 'node:stream';
import { ToolError } from '../core/errors.js';
import { checkExecInput } from '../core/input.js';
import { parseEnvAssignment } from '../core/names.js';
import type { BoxRef } from '../core/refs.js';
import type { ExecRequest, LifecycleResult } from '../core/service.js';
import { runtimeBox, withBox } from './access.js';
import type { EngineContext } from './context.js';
import { imageWorkdir } from './image-config.js';
import { asStopped, baseConfigOf, runningRow, startRow, statusOf, stopRow, withStatus } from './lifecycle.js';

export async function stop(ctx: EngineContext, ref: BoxRef): Promise<LifecycleResult> {
  return withBox(ctx, ref, async ({ row }) => {
    const changed = await stopRow(ctx, row);
    return { box: await withStatus(ctx, row), changed };
  });
}

export async function resume(ctx: EngineContext, ref: BoxRef): Promise<LifecycleResult> {
  return withBox(ctx, ref, async ({ row }) => {
    const changed = (await statusOf(ctx, row)) === 'stopped';
    if (changed) await startRow(ctx, row);
    return { box: await withStatus(ctx, row), changed };
  });
}

function checkRequest(req: ExecRequest): void {
  checkExecInput(req);
  for (const [k, v] of Object.entries(req.env ?? {})) parseEnvAssignment(`${k}=${v}`);
}

export interface ExecStreams {
  stdin?: Readable;
  stdout: Writable;
  stderr: Writable;
  signal?: AbortSignal;
}

/** Runs a command in the box with its streams connected as given; resolves with its exit code. */
export async function exec(ctx: EngineContext, ref: BoxRef, req: ExecRequest, streams: ExecStreams): Promise<number> {
  checkRequest(req);
  const row = await runningRow(ctx, ref);
  const box = runtimeBox(ctx, row);
  const cwd = req.cwd ?? imageWorkdir(baseConfigOf(ctx, row), box.root);
  let handle;
  try {
    handle = ctx.runtime.exec(box, {
      command: req.command,
      ...(req.env ? { env: req.env } : {}),
      ...(cwd !== undefined ? { cwd } : {}),
      ...(req.shell ? { shell: true } : {}),
      ...(req.user !== undefined ? { user: req.user } : {}),
      stdin: streams.stdin ? 'pipe' : 'ignore',
      stdout: 'pipe',
      stderr: 'pipe',
      ...(streams.signal ? { signal: streams.signal } : {}),
    });
  } catch (err) {
    throw asStopped(row, err);
  }
  if (streams.stdin && handle.stdin) streams.stdin.pipe(handle.stdin);
  handle.stdout?.pipe(streams.stdout, { end: false });
  const stderr = new EnterGuard(streams.stderr);
  handle.stderr?.pipe(stderr, { end: false });
  const code = await handle.exited;
  const failure = stderr.enterFailure(code);
  if (failure !== undefined) {
    throw new ToolError('ZOMG_EXEC_FAILED', `could not enter box "${row.project}:${row.name}": ${failure}`, {
      hint: 'the box may have just been stopped or restarted; try again',
    });
  }
  return code;
}

/**
 * Passes the command's stderr through, except that it holds back a first line in which
 * the namespace-entering tool itself says it failed (before the command ran): such an exit
 * is zomg's failure to enter the box, not the command's exit code. Both entry programs
 * are known: `zomg-enter` (default boxes; exit 125) and `nsenter` (boxes started by an older
 * zomg; exit 1).
 */
export class EnterGuard extends Writable {
  private held: Buffer | undefined;
  private decided = false;
  /** The first bytes were the entry program's failure: everything is held until the exit code says. */
  private holding = false;

  constructor(private readonly target: Writable) {
    super();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (!this.decided || this.holding) {
      this.held = this.held ? Buffer.concat([this.held, chunk]) : chunk;
      if (this.holding) return callback(); // the tool's message, to its end
      const text = this.held.toString('utf8');
      if (ENTER_PREFIXES.some((p) => text.length < p.length && p.startsWith(text))) return callback();
      this.decided = true;
      if (enterTool(text) !== undefined) {
        this.holding = true;
        return callback();
      }
      const out = this.held;
      this.held = undefined;
      return this.forward(out, callback);
    }
    this.forward(chunk, callback);
  }

  private forward(chunk: Buffer, callback: (error?: Error | null) => void): void {
    if (this.target.write(chunk)) callback();
    else this.target.once('drain', () => callback());
  }

  /** The tool's own reason when the exec failed before the command ran; otherwise flushes what was held. */
  enterFailure(code: number): string | undefined {
    const text = this.held?.toString('utf8');
    const tool = text === undefined ? undefined : enterTool(text);
    if (text !== undefined && tool !== undefined && code === tool.exitCode) {
      return text.slice(tool.prefix.length).split('\n')[0]?.replace(/\/proc\/\d+/g, '/proc/<init>');
    }
    if (this.held) this.target.write(this.held);
    this.held = undefined;
    return undefined;
  }
}

const ENTER_TOOLS = [
  // zomg-enter (runtime/enter.ts) says only its own failures this way, then exits 125.
  { prefix: 'zomg-enter: ', exitCode: 125, failure: /^zomg-enter: / },
  { prefix: 'nsenter: ', exitCode: 1, failure: /^nsenter: (cannot open|reassociate to namespace|neither filename nor target pid|failed to (change|set|read))/ },
];
const ENTER_PREFIXES = ENTER_TOOLS.map((t) => t.prefix);
const enterTool = (text: string): (typeof ENTER_TOOLS)[number] | undefined => ENTER_TOOLS.find((t) => t.failure.test(text));

/** Runs a command detached (`--bg`); its output goes to /tmp/boxes/exec/<pid>.log in the box. */
export async function execDetached(ctx: EngineContext, ref: BoxRef, req: ExecRequest): Promise<{ pid: number; log_path: string }> {
  checkRequest(req);
  const row = await runningRow(ctx, ref);
  const box = runtimeBox(ctx, row);
  const cwd = req.cwd ?? imageWorkdir(baseConfigOf(ctx, row), box.root);
  let bg;
  try {
    bg = await ctx.runtime.execDetached(box, {
      command: req.command,
      ...(req.env ? { env: req.env } : {}),
      ...(cwd !== undefined ? { cwd } : {}),
      ...(req.shell ? { shell: true } : {}),
      ...(req.user !== undefined ? { user: req.user } : {}),
    });
  } catch (err) {
    throw asStopped(row, err);
  }
  return { pid: bg.pid, log_path: bg.logPath };
}
