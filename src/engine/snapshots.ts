/**
 * Box snapshots ("checkpoints" in the API): read-only btrfs snapshots of a box root under
 * `checkpoints/<box-id>/<name>`, created in their final directory (a read-only subvolume
 * cannot change directory). Restore swaps roots atomically: a writable snapshot of the
 * checkpoint is built in staging → the live root is renamed aside → the new root is renamed
 * into place → commit → the old root is deleted.
 */
import { checkText } from '../core/input.js';
import { randomBytes } from 'node:crypto';
import { mkdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { ConflictError, snapshotNotFound } from '../core/errors.js';
import { parseSnapshotName } from '../core/names.js';
import type { BoxRef } from '../core/refs.js';
import type { CreateCheckpointOptions } from '../core/service.js';
import type { Checkpoint } from '../core/types.js';
import { nextSnapshotName } from '../core/versions.js';
import type { BoxRow, CheckpointRow } from '../db/boxes-repo.js';
import { transaction } from '../db/database.js';
import { Reverter } from '../system/reverter.js';
import { boxLockKey, findBox, rootPath } from './boxes.js';
import { type EngineContext, isoNow } from './context.js';
import { startRow, stopRow } from './running.js';
import { scheduleSizes } from './sizes.js';

export const checkpointPath = (ctx: EngineContext, boxId: string, name: string): string => join(ctx.paths.checkpoints, boxId, name);

/** The aside name of a root during a restore; the reconciler finishes or undoes a restore from it. */
export const ASIDE_MARK = '@restore-';

const toCheckpoint = (box: BoxRow, row: CheckpointRow): Checkpoint => ({
  name: row.name,
  box: box.name,
  project: box.project,
  description: row.description,
  size_bytes: row.size_bytes,
  created_at: row.created_at,
});

const lockOpts = (ref: BoxRef) => ({ what: `box "${ref.project}:${ref.name}"`, timeoutMs: 120_000 });

export async function createCheckpoint(ctx: EngineContext, ref: BoxRef, options: CreateCheckpointOptions = {}): Promise<Checkpoint> {
  const requested = options.name !== undefined ? parseSnapshotName(options.name) : undefined;
  if (options.description !== undefined) checkText(options.description, 'description', 'text');
  return ctx.locks.with(boxLockKey(ref), async () => {
    const box = findBox(ctx, ref);
    const existing = ctx.checkpoints.list(box.id).map((c) => c.name);
    const name = requested ?? nextSnapshotName(existing);
    if (existing.includes(name)) {
      throw new ConflictError('ZOMG_SNAPSHOT_EXISTS', `snapshot "${name}" of box "${box.name}" already exists`, { hint: 'pick another name, or omit it to get the next vN' });
    }
    const dest = checkpointPath(ctx, box.id, name);
    const row: CheckpointRow = { box_id: box.id, name, description: options.description ?? '', size_bytes: null, created_at: isoNow(ctx) };
    const checkpoint = await new Reverter().run(async (r) => {
      await mkdir(join(ctx.paths.checkpoints, box.id), { recursive: true, mode: 0o700 });
      ctx.pending.add(dest, process.pid, row.created_at);
      r.add('forget pending', () => ctx.pending.remove(dest));
      await ctx.driver.snapshot(rootPath(ctx, box.id), dest, { readOnly: true });
      r.add('delete snapshot subvolume', () => ctx.driver.deleteSubvolume(dest));
      await ctx.fault('snapshot:placed');
      transaction(ctx.db, () => {
        ctx.checkpoints.insert(row);
        ctx.pending.remove(dest);
      });
      return toCheckpoint(box, row);
    });
    scheduleSizes(ctx);
    return checkpoint;
  }, lockOpts(ref));
}

export function listCheckpoints(ctx: EngineContext, ref: BoxRef): Checkpoint[] {
  const box = findBox(ctx, ref);
  return ctx.checkpoints.list(box.id).map((row) => toCheckpoint(box, row));
}

export function findCheckpoint(ctx: EngineContext, box: BoxRow, name: string): CheckpointRow {
  parseSnapshotName(name);
  const row = ctx.checkpoints.get(box.id, name);
  if (!row) throw snapshotNotFound(box.name, name);
  return row;
}

export function getCheckpoint(ctx: EngineContext, ref: BoxRef, name: string): Checkpoint {
  const box = findBox(ctx, ref);
  return toCheckpoint(box, findCheckpoint(ctx, box, name));
}

/**
 * Replaces the box root with a writable clone of the checkpoint. Afterwards the root is
 * exactly the checkpoint, or — after a failure at any step — exactly what it was. Every
 * checkpoint survives, so the box can go back and forward again.
 */
export async function restoreCheckpoint(ctx: EngineContext, ref: BoxRef, name: string): Promise<Checkpoint> {
  return ctx.locks.with(boxLockKey(ref), async () => {
    const box = findBox(ctx, ref);
    const cp = findCheckpoint(ctx, box, name);
    const root = rootPath(ctx, box.id);
    // Unique per restore: a leftover aside (a failed delete) never blocks the next restore.
    const aside = `${root}${ASIDE_MARK}${process.pid}-${randomBytes(3).toString('hex')}`;
    // A running box is stopped for the swap (its processes hold the old tree) and resumed
    // afterwards — on the new root, or on the old one when the restore failed.
    const wasRunning = await stopRow(ctx, box);
    let failure: unknown;
    try {
      await swapRoot(ctx, box, cp, root, aside);
    } catch (err) {
      failure = err;
    }
    if (wasRunning) {
      try {
        await startRow(ctx, box);
      } catch (err) {
        failure ??= err; // the restore's own error, if any, is the one to report
      }
    }
    if (failure !== undefined) throw failure;
    // Irreversible, and after the commit: a failure here leaves only garbage the reconciler removes.
    await ctx.driver.deleteSubvolume(aside).catch(() => undefined);
    return toCheckpoint(box, cp);
  }, lockOpts(ref));
}

/**
 * The new root is built completely in staging first (a checkpoint may hold nested
 * subvolumes, placed one by one), then two renames swap it in. A crash before the first
 * rename leaves the old root; between the two, the reconciler puts the aside back; after
 * the second, the new root is whole.
 */
async function swapRoot(ctx: EngineContext, box: BoxRow, cp: CheckpointRow, root: string, aside: string): Promise<void> {
  await new Reverter().run(async (r) => {
    const staged = ctx.stagingPath(`restore-${box.id}`);
    await ctx.driver.snapshot(checkpointPath(ctx, box.id, cp.name), staged, { readOnly: false });
    r.add('delete the staged root', () => ctx.driver.deleteSubvolume(staged));
    await rename(root, aside);
    r.add('put the old root back', () => rename(aside, root));
    await ctx.fault('restore:aside');
    await rename(staged, root);
    r.add('take the new root out', () => rename(root, staged));
    await ctx.fault('restore:placed');
    transaction(ctx.db, () => ctx.boxes.update(box.id, { updatedAt: isoNow(ctx) }));
    await ctx.fault('restore:committed');
  });
}

export async function deleteCheckpoint(ctx: EngineContext, ref: BoxRef, name: string): Promise<void> {
  await ctx.locks.with(boxLockKey(ref), async () => {
    const box = findBox(ctx, ref);
    const cp = findCheckpoint(ctx, box, name);
    transaction(ctx.db, () => ctx.checkpoints.delete(box.id, cp.name));
    await ctx.driver.deleteSubvolume(checkpointPath(ctx, box.id, cp.name));
  }, lockOpts(ref));
}
