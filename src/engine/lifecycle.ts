/**
 * Starting and stopping a box through the runtime, and its live status. A box's state is
 * always checked against the host, never remembered, so after a reboot every box reads
 * `stopped` until resumed. Callers hold the box lock.
 */
import { BOX_MOUNTS } from '../core/box-layout.js';
import { ConflictError } from '../core/errors.js';
import { DEFAULT_LISTEN } from '../core/net.js';
import type { BoxRef } from '../core/refs.js';
import type { Box } from '../core/types.js';
import type { BoxRow } from '../db/boxes-repo.js';
import type { SubvolumeId } from '../storage/layout.js';
import { boxEnvironment } from '../runtime/environment.js';
import type { BoxVolume } from '../runtime/runtime.js';
import { findBox, runtimeBox } from './access.js';
import type { EngineContext } from './context.js';
import { imageEnvironment } from './image-config.js';
import { dataVolumesOf } from './volume-access.js';

/**
 * The system and project volumes, subvolumes outside every root: `/box/bin` (read-only
 * tools), `/box/all` (shared by every box), `/box/proj` and `/home` (shared by the boxes of
 * one project). Created on first use.
 */
async function systemVolumes(ctx: EngineContext, project: string): Promise<BoxVolume[]> {
  const specs = BOX_MOUNTS.map((m): [SubvolumeId, string, boolean] => [
    m.scope === 'system' ? { kind: 'system', name: m.volume as 'bin' | 'all' } : { kind: 'project', project, name: m.volume as 'proj' | 'home' },
    m.path,
    m.readOnly,
  ]);
  for (const [id] of specs) {
    if (ctx.pool.exists(id)) continue;
    try {
      await ctx.pool.create(id);
    } catch (err) {
      if (!ctx.pool.exists(id)) throw err; // another process made it meanwhile
    }
  }
  return specs.map(([id, boxPath, readOnly]) => ({ hostPath: ctx.pool.hostPath(id), boxPath, readOnly }));
}

export async function statusOf(ctx: EngineContext, row: BoxRow): Promise<'running' | 'stopped'> {
  return ctx.runtime.status(runtimeBox(ctx, row));
}

export async function withStatus(ctx: EngineContext, row: BoxRow): Promise<Box> {
  return { ...row, status: await statusOf(ctx, row) };
}

/** The image config (ENV, WORKDIR…) of the base version the box was cloned from, when it has one. */
export const baseConfigOf = (ctx: EngineContext, row: BoxRow) => ctx.bases.getVersion(row.base)?.config ?? null;

/** Starts the box's init (idempotent). The caller holds the box lock. */
export async function startRow(ctx: EngineContext, row: BoxRow): Promise<void> {
  // The image's ENV sits under the box's own variables (and the injected ones win over both).
  const user = { ...imageEnvironment(baseConfigOf(ctx, row)), ...row.environment };
  await ctx.runtime.start({
    ...runtimeBox(ctx, row),
    hostname: `${row.name}.${row.project}`,
    env: boxEnvironment({ project: row.project, box: row.name, apiUrl: ctx.options.apiUrl ?? `http://${DEFAULT_LISTEN}`, user }),
    volumes: [...(await systemVolumes(ctx, row.project)), ...dataVolumesOf(ctx, row)],
    config: row.config,
    fault: (step) => ctx.fault(step),
  });
}

/** Stops every process of the box; false if it was not running. The caller holds the box lock. */
export async function stopRow(ctx: EngineContext, row: BoxRow): Promise<boolean> {
  return (await ctx.runtime.stop(runtimeBox(ctx, row))) === 'stopped';
}

const stoppedError = (row: { project: string; name: string }): ConflictError =>
  new ConflictError('ZOMG_BOX_STOPPED', `box "${row.project}:${row.name}" is stopped`, { hint: `start it with \`zomg resume ${row.project}:${row.name}\`` });

/** The runtime says "not running" when a stop raced a command: the same error as a stopped box. */
export function asStopped(row: BoxRow, err: unknown): unknown {
  return err instanceof ConflictError && err.code === 'ZOMG_BOX_NOT_RUNNING' ? stoppedError(row) : err;
}

/** The box's row, when it runs (else `ZOMG_BOX_STOPPED` with the hint to resume). */
export async function runningRow(ctx: EngineContext, ref: BoxRef): Promise<BoxRow> {
  const row = findBox(ctx, ref);
  if ((await statusOf(ctx, row)) !== 'running') throw stoppedError(row);
  return row;
}
