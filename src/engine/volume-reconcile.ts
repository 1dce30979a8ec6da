/**
 * The reconciler's part for data volumes (called by reconcile.ts with the pool's mutations
 * lock held exclusively, so nothing here is in flight): rows whose subvolume is gone,
 * subvolumes with no row (volumes, their snapshots, backup parents), and box-owned volumes
 * whose owning box's deletion was cut short.
 */
import { transaction } from '../db/database.js';
import type { EngineContext } from './context.js';
import type { ReconcileReport } from './reconcile.js';
import { deleteOwnedVolumes, volumeBackupId, volumeId, volumeSnapshotId } from './volume-access.js';

export async function repairVolumes(ctx: EngineContext, report: ReconcileReport): Promise<void> {
  const { pool } = ctx;

  // Rows whose subvolume is gone.
  transaction(ctx.db, () => {
    for (const id of ctx.volumes.ids()) {
      if (pool.exists(volumeId({ id }))) continue;
      ctx.volumes.delete(id); // its snapshot and parent rows cascade; their subvolumes are orphans below
      report.removedRows++;
    }
    for (const s of ctx.volumes.allSnapshots()) {
      if (pool.exists(volumeSnapshotId({ id: s.volume_id }, s.name))) continue;
      ctx.volumes.deleteSnapshot(s.volume_id, s.name);
      report.removedRows++;
    }
    for (const p of ctx.volumes.allBackupParents()) {
      if (pool.exists(volumeBackupId({ id: p.volume_id }, p.name))) continue;
      ctx.volumes.deleteBackupParent(p.volume_id, p.target);
      report.removedRows++;
    }
  });

  // Box-owned volumes whose owner is gone: the box's deletion did not get to them.
  const owners = new Set(ctx.volumes.list().flatMap((v) => (v.ownership === 'box_owned' && v.owner_box_id !== null ? [v.owner_box_id] : [])));
  for (const owner of owners) {
    if (ctx.boxes.byId(owner)) continue;
    const before = ctx.volumes.ownedBy(owner).length;
    await deleteOwnedVolumes(ctx, owner);
    report.removedRows += before - ctx.volumes.ownedBy(owner).length;
  }

  // Subvolumes with no row.
  for (const id of pool.listVolumes()) {
    if (ctx.volumes.byId(id)) continue;
    await pool.delete(volumeId({ id }));
    report.removedSubvolumes++;
  }
  for (const s of pool.listVolumeSnapshots()) {
    if (ctx.volumes.snapshot(s.box, s.name)) continue;
    await pool.delete(volumeSnapshotId({ id: s.box }, s.name));
    report.removedSubvolumes++;
  }
  for (const b of pool.listVolumeBackups()) {
    if (ctx.volumes.backupParents(b.box).some((p) => p.name === b.name)) continue;
    await pool.delete(volumeBackupId({ id: b.box }, b.name));
    report.removedSubvolumes++;
  }
}
