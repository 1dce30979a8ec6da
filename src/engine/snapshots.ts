/**
 * Box snapshots ("checkpoints" in the API): read-only snapshots of a box root, taken
 * straight into their final place (a read-only subvolume cannot change directory). Restore
 * swaps roots atomically (Pool.swap): a writable clone of the snapshot is built in
 * staging → the live root is renamed aside → the new root is renamed into place → commit →
 * the old root is deleted.
 */
import { ConflictError } from '../core/errors.js';
import { checkText } from '../core/input.js';
import { parseSnapshotName } from '../core/names.js';
import type { BoxRef } from '../core/refs.js';
import type { CreateSnapshotOptions } from '../core/service.js';
import type { Snapshot } from '../core/types.js';
import { nextSnapshotName } from '../core/versions.js';
import type { BoxRow, SnapshotRow } from '../db/boxes-repo.js';
import { transaction } from '../db/database.js';
import { Reverter } from '../system/reverter.js';
import { snapshotId, findBox, findSnapshot, withBox } from './access.js';
import { type EngineContext, isoNow } from './context.js';
import { startRow, stopRow } from './lifecycle.js';
import { scheduleSizes } from './sizes.js';

const toSnapshot = (box: BoxRow, row: SnapshotRow): Snapshot => ({
  name: row.name,
  box: box.name,
  project: box.project,
  description: row.description,
  size_bytes: row.size_bytes,
  created_at: row.created_at,
});

/**
 * Takes a read-only snapshot of the box root. The name is chosen, the subvolume placed and
 * the row committed under the box lock (and the pool's shared mutations lock, so the
 * reconciler never sees the snapshot before its row): a name, once reported, belongs to a
 * snapshot that exists.
 */
export async function createSnapshot(ctx: EngineContext, ref: BoxRef, options: CreateSnapshotOptions = {}): Promise<Snapshot> {
  const requested = options.name !== undefined ? parseSnapshotName(options.name) : undefined;
  if (options.description !== undefined) checkText(options.description, 'description', 'text');
  const snapshot = await withBox(ctx, ref, async ({ row: box, root }) => {
    const existing = ctx.snapshots.list(box.id).map((c) => c.name);
    const name = requested ?? nextSnapshotName(existing);
    const dest = snapshotId(box, name);
    if (existing.includes(name) || ctx.pool.exists(dest)) {
      throw new ConflictError('ZOMG_SNAPSHOT_EXISTS', `snapshot "${name}" of box "${box.name}" already exists`, { hint: 'pick another name, or omit it to get the next vN' });
    }
    const row: SnapshotRow = { box_id: box.id, name, description: options.description ?? '', size_bytes: null, created_at: isoNow(ctx) };
    return new Reverter().run(async (r) => {
      await ctx.pool.snapshot(root, dest, { readOnly: true });
      r.add('delete snapshot subvolume', () => ctx.pool.delete(dest));
      await ctx.fault('snapshot:placed');
      transaction(ctx.db, () => ctx.snapshots.insert(row));
      return toSnapshot(box, row);
    });
  });
  scheduleSizes(ctx);
  return snapshot;
}

export function listSnapshots(ctx: EngineContext, ref: BoxRef): Snapshot[] {
  const box = findBox(ctx, ref);
  return ctx.snapshots.list(box.id).map((row) => toSnapshot(box, row));
}

export function getSnapshot(ctx: EngineContext, ref: BoxRef, name: string): Snapshot {
  const box = findBox(ctx, ref);
  return toSnapshot(box, findSnapshot(ctx, box, name));
}

/**
 * Replaces the box root with a writable clone of the snapshot. Afterwards the root is
 * exactly the snapshot, or — after a failure at any step — exactly what it was. Every
 * snapshot survives, so the box can go back and forward again.
 */
export async function restoreSnapshot(ctx: EngineContext, ref: BoxRef, name: string): Promise<Snapshot> {
  return withBox(ctx, ref, async ({ row: box, root }) => {
    const cp = findSnapshot(ctx, box, name);
    // A running box is stopped for the swap (its processes hold the old tree) and resumed
    // afterwards — on the new root, or on the old one when the restore failed.
    const wasRunning = await stopRow(ctx, box);
    let failure: unknown;
    let aside: string | undefined;
    try {
      // The new root is built whole in staging first (a snapshot may hold nested
      // subvolumes, placed one by one), then two renames swap it in.
      aside = await new Reverter().run(async (r) => {
        const staged = ctx.pool.newStaging(`restore-${box.id}`);
        await ctx.pool.snapshot(snapshotId(box, cp.name), staged, { readOnly: false });
        r.add('delete the staged root', () => ctx.pool.delete(staged));
        return ctx.pool.swap(root, staged, {
          fault: (step) => ctx.fault(step),
          commit: () => transaction(ctx.db, () => ctx.boxes.update(box.id, { updatedAt: isoNow(ctx) })),
        });
      });
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
    if (aside !== undefined) await ctx.pool.deleteAside(root, aside).catch(() => undefined);
    return toSnapshot(box, cp);
  });
}

export async function deleteSnapshot(ctx: EngineContext, ref: BoxRef, name: string): Promise<void> {
  await withBox(ctx, ref, async ({ row: box }) => {
    const cp = findSnapshot(ctx, box, name);
    transaction(ctx.db, () => ctx.snapshots.delete(box.id, cp.name));
    await ctx.pool.delete(snapshotId(box, cp.name));
  });
}
