/**
 * Running boxes, through the BoxRuntime (runtime/runtime.ts): stop and resume (under the
 * box's lock, withBox), and exec — streamed, or detached in the background (`--bg`). An exec
 * takes no lock: it needs a running box, and a stopped one is ZOMG_BOX_STOPPED. EnterGuard
 * (engine/enter-guard.ts) tells the entry program's own failure from the command's.
 */
import type { Readable, Writable } from 'node:stream';
import { ToolError } from '../core/errors.js';
import { checkExecInput } from '../core/input.js';
import { parseEnvAssignment } from '../core/names.js';
import type { BoxRef } from '../core/refs.js';
import type { ExecRequest, LifecycleResult } from '../core/service.js';
import { CommandError } from '../system/run.js';
import { runtimeBox, withBox } from './access.js';
import type { EngineContext } from './context.js';
import { EnterGuard, enterFailed, entryFailure } from './enter-guard.js';
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
  if (failure !== undefined) throw enterFailed(row, failure);
  return code;
}

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
    // The entry program's own failure is reported as a foreground exec reports it.
    const failure = err instanceof ToolError && err.cause instanceof CommandError ? entryFailure(err.cause.stderr, err.cause.code ?? -1) : undefined;
    if (failure !== undefined) throw enterFailed(row, failure);
    throw asStopped(row, err);
  }
  return { pid: bg.pid, log_path: bg.logPath };
}

export { EnterGuard };
