/**
 * Boxes that run: start, stop, status and exec, over the runtime's sandbox. A box's state is
 * always checked against the host (its init process), never remembered, so after a reboot
 * every box reads `stopped` until resumed.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { ConflictError } from '../core/errors.js';
import { checkExecInput } from '../core/input.js';
import { parseEnvAssignment } from '../core/names.js';
import type { BoxRef } from '../core/refs.js';
import type { ExecRequest, LifecycleResult } from '../core/service.js';
import type { Box } from '../core/types.js';
import type { BoxRow } from '../db/boxes-repo.js';
import { boxEnvironment } from '../runtime/environment.js';
import { type BoxVolume, boxStatus, execBackground, execInBox, startBox, stopBox } from '../runtime/sandbox.js';
import { boxLockKey, findBox, rootPath } from './boxes.js';
import type { EngineContext } from './context.js';
import { imageEnvironment, imageWorkdir } from './image-config.js';

export const runDirOf = (ctx: EngineContext, boxId: string): string => join(ctx.stateDir, 'run', 'boxes', boxId);

/**
 * The system and project volumes, subvolumes outside every root: `/box/bin` (read-only
 * tools), `/box/all` (shared by every box), `/box/proj` and `/home` (shared by the boxes of
 * one project). Created on first use.
 */
async function systemVolumes(ctx: EngineContext, project: string): Promise<BoxVolume[]> {
  const volumes = join(ctx.paths.pool, 'volumes');
  const specs: Array<[string, string, boolean]> = [
    [join(volumes, '_system', 'bin'), '/box/bin', true],
    [join(volumes, '_system', 'all'), '/box/all', false],
    [join(volumes, '_projects', project, 'proj'), '/box/proj', false],
    [join(volumes, '_projects', project, 'home'), '/home', false],
  ];
  for (const [hostPath] of specs) {
    if (existsSync(hostPath)) continue;
    await mkdir(join(hostPath, '..'), { recursive: true });
    try {
      await ctx.driver.createSubvolume(hostPath);
    } catch (err) {
      if (!existsSync(hostPath)) throw err; // another process made it meanwhile
    }
  }
  return specs.map(([hostPath, boxPath, readOnly]) => ({ hostPath, boxPath, readOnly }));
}

export async function statusOf(ctx: EngineContext, row: BoxRow): Promise<'running' | 'stopped'> {
  return boxStatus(runDirOf(ctx, row.id), rootPath(ctx, row.id));
}

export async function withStatus(ctx: EngineContext, row: BoxRow): Promise<Box> {
  return { ...row, status: await statusOf(ctx, row) };
}

/** The image config (ENV, WORKDIR…) of the base version the box was cloned from, when it has one. */
const baseConfigOf = (ctx: EngineContext, row: BoxRow) => ctx.bases.getVersion(row.base)?.config ?? null;

/** Starts the box's init (idempotent). The caller holds the box lock. */
export async function startRow(ctx: EngineContext, row: BoxRow): Promise<void> {
  // The image's ENV sits under the box's own variables (and the injected ones win over both).
  const user = { ...imageEnvironment(baseConfigOf(ctx, row)), ...row.environment };
  await startBox({
    id: row.id,
    root: rootPath(ctx, row.id),
    hostname: `${row.name}.${row.project}`,
    env: boxEnvironment({ project: row.project, box: row.name, apiUrl: ctx.options.apiUrl ?? 'http://127.0.0.1:7070', user }),
    volumes: await systemVolumes(ctx, row.project),
    runDir: runDirOf(ctx, row.id),
  });
}

/** Stops every process of the box; nothing if it is not running. The caller holds the box lock. */
export async function stopRow(ctx: EngineContext, row: BoxRow): Promise<boolean> {
  return (await stopBox(runDirOf(ctx, row.id))) === 'stopped';
}

const lockOpts = (ref: BoxRef) => ({ what: `box "${ref.project}:${ref.name}"`, timeoutMs: 120_000 });

export async function stop(ctx: EngineContext, ref: BoxRef): Promise<LifecycleResult> {
  return ctx.locks.with(boxLockKey(ref), async () => {
    const row = findBox(ctx, ref);
    const changed = await stopRow(ctx, row);
    return { box: await withStatus(ctx, row), changed };
  }, lockOpts(ref));
}

export async function resume(ctx: EngineContext, ref: BoxRef): Promise<LifecycleResult> {
  return ctx.locks.with(boxLockKey(ref), async () => {
    const row = findBox(ctx, ref);
    const changed = (await statusOf(ctx, row)) === 'stopped';
    if (changed) await startRow(ctx, row);
    return { box: await withStatus(ctx, row), changed };
  }, lockOpts(ref));
}

function checkRequest(req: ExecRequest): void {
  checkExecInput(req);
  for (const [k, v] of Object.entries(req.env ?? {})) parseEnvAssignment(`${k}=${v}`);
}

async function runningRow(ctx: EngineContext, ref: BoxRef): Promise<BoxRow> {
  const row = findBox(ctx, ref);
  if ((await statusOf(ctx, row)) !== 'running') throw stoppedError(row);
  return row;
}

export interface ExecStreams {
  stdin?: Readable;
  stdout: Writable;
  stderr: Writable;
  signal?: AbortSignal;
}

/** Runs a command in the box with its streams connected as given; resolves with its exit code. */
/** The runtime says "not running" when a stop raced the exec: the same error as a stopped box. */
function asStopped(row: BoxRow, err: unknown): unknown {
  return err instanceof ConflictError && err.code === 'ZOMG_BOX_NOT_RUNNING' ? stoppedError(row) : err;
}

const stoppedError = (row: BoxRow): ConflictError =>
  new ConflictError('ZOMG_BOX_STOPPED', `box "${row.project}:${row.name}" is stopped`, { hint: `start it with \`zomg resume ${row.project}:${row.name}\`` });

export async function exec(ctx: EngineContext, ref: BoxRef, req: ExecRequest, streams: ExecStreams): Promise<number> {
  checkRequest(req);
  const row = await runningRow(ctx, ref);
  const cwd = req.cwd ?? imageWorkdir(baseConfigOf(ctx, row), rootPath(ctx, row.id));
  let handle;
  try {
    handle = execInBox(runDirOf(ctx, row.id), {
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
  const cwd = req.cwd ?? imageWorkdir(baseConfigOf(ctx, row), rootPath(ctx, row.id));
  let bg;
  try {
    bg = await execBackground(runDirOf(ctx, row.id), {
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

/** A name for an ephemeral box (`zomg exec - …`). */
export const ephemeralName = (): string => `ephemeral-${randomBytes(4).toString('hex')}`;
