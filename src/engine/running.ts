/** Running boxes: stop, resume and exec, through the runtime. */
import type { Readable, Writable } from 'node:stream';
import { ConflictError } from '../core/errors.js';
import { parseEnvAssignment } from '../core/names.js';
import type { BoxRef } from '../core/refs.js';
import type { ExecRequest, LifecycleResult } from '../core/service.js';
import type { BoxRow } from '../db/boxes-repo.js';
import { findBox, runtimeBox, withBox } from './access.js';
import type { EngineContext } from './context.js';
import { imageWorkdir } from './image-config.js';
import { baseConfigOf, startRow, statusOf, stopRow, stoppedError, withStatus } from './lifecycle.js';

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
  for (const [k, v] of Object.entries(req.env ?? {})) parseEnvAssignment(`${k}=${v}`);
}

async function runningRow(ctx: EngineContext, ref: BoxRef): Promise<BoxRow> {
  const row = findBox(ctx, ref);
  if ((await statusOf(ctx, row)) !== 'running') throw stoppedError(row);
  return row;
}

/** The runtime says "not running" when a stop raced the exec: the same error as a stopped box. */
function asStopped(row: BoxRow, err: unknown): unknown {
  return err instanceof ConflictError && err.code === 'ZOMG_BOX_NOT_RUNNING' ? stoppedError(row) : err;
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
  handle.stderr?.pipe(streams.stderr, { end: false });
  return handle.exited;
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
    throw asStopped(row, err);
  }
  return { pid: bg.pid, log_path: bg.logPath };
}
