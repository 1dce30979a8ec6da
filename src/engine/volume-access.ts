/**
 * What the other use cases need of data volumes, and the box side of them: ids and locks,
 * the mounts a box asks for (checked, resolved, handed to the runtime), the clones a fork
 * makes, and the box-owned volumes a deleted box leaves. The volume use cases themselves
 * are in engine/volumes.ts.
 */
import { randomHex } from '../system/builtins.js';
import { NotFoundError } from '../core/errors.js';
import type { ProjectName } from '../core/names.js';
import type { DataMountSpec } from '../core/service.js';
import {
  type DataMount,
  type VolumeRef,
  boxOwnedVolumeName,
  checkMountPath,
  checkMountSet,
  parseVolumeRef,
  volumeLabel,
  volumeNotFound,
  } from '../core/volumes.js';
import type { BoxRow } from '../db/boxes-repo.js';
import { transaction } from '../db/database.js';
import type { VolumeRow } from '../db/volumes-repo.js';
import type { BoxVolume } from '../runtime/runtime.js';
import type { SubvolumeId } from '../storage/layout.js';
import type { Reverter } from '../system/reverter.js';
import { BOX_LOCK_TIMEOUT_MS, mutation } from './access.js';
import { type EngineContext, isoNow } from './context.js';

export const volumeId = (v: { id: string }): SubvolumeId => ({ kind: 'volume', volume: v.id });
export const volumeSnapshotId = (v: { id: string }, name: string): SubvolumeId => ({ kind: 'volume-snapshot', volume: v.id, name });
export const volumeBackupId = (v: { id: string }, name: string): SubvolumeId => ({ kind: 'volume-backup', volume: v.id, name });

export const volumeLockKey = (ref: { project: string; name: string }): string => `volume-${ref.project}-${ref.name}`;
export const volumeWhat = (ref: { project: string; name: string }): string => `volume "${ref.project}:${ref.name}"`;

export function findVolume(ctx: EngineContext, ref: { project: string; name: string }): VolumeRow {
  const row = ctx.volumes.get(ref.project, ref.name);
  if (!row) throw volumeNotFound(ref);
  return row;
}


export function withVolume<T>(ctx: EngineContext, ref: VolumeRef, fn: (row: VolumeRow) => Promise<T>, options: { mutates?: boolean } = {}): Promise<T> {
  const locked = (): Promise<T> => ctx.locks.with(volumeLockKey(ref), () => fn(findVolume(ctx, ref)), { what: volumeWhat(ref), timeoutMs: BOX_LOCK_TIMEOUT_MS });
  return options.mutates === false ? locked() : mutation(ctx, locked);
}

/** The volume a box's data mount names (`name` in the box's project, or `project:name`). */
const mountRef = (mount: { name: string }, boxProject: string): VolumeRef => parseVolumeRef(mount.name, boxProject as ProjectName);

/** Boxes that mount the volume, with where and how. */
export function attachmentsOf(ctx: EngineContext, volume: { project: string; name: string }): Array<{ box: BoxRow; mount: DataMount }> {
  const out: Array<{ box: BoxRow; mount: DataMount }> = [];
  for (const box of ctx.boxes.list()) {
    for (const mount of box.data_mounts) {
      const ref = mountRef(mount, box.project);
      if (ref.project === volume.project && ref.name === volume.name) out.push({ box, mount });
    }
  }
  return out;
}


export const newVolumeId = (): string => randomHex(8);


export const VOLUME_SIZE_MAX_AGE_MS = 5 * 60_000;


export async function removeVolumeSubvolumes(ctx: EngineContext, row: { id: string }, snapshots: string[], parents: string[]): Promise<void> {
  for (const name of snapshots) await ctx.pool.delete(volumeSnapshotId(row, name));
  for (const name of parents) await ctx.pool.delete(volumeBackupId(row, name));
  await ctx.pool.delete(volumeId(row));
}

// --- boxes and their data mounts -----------------------------------------------------------

/** Validates mount specs for a box of `project` (syntax, reserved and nested paths, duplicates); no I/O. */
export function checkMountSpecs(project: string, specs: readonly DataMountSpec[]): DataMount[] {
  const mounts = specs.map((s) => {
    const ref = parseVolumeRef(s.name, project as ProjectName);
    return { name: volumeLabel(ref, project), path: checkMountPath(s.path), read_only: s.read_only === true };
  });
  checkMountSet(mounts);
  return mounts;
}

/** Throws unless every mounted volume exists (call inside the transaction that records the mounts). */
export function requireMountedVolumes(ctx: EngineContext, project: string, mounts: readonly DataMount[]): void {
  for (const m of mounts) {
    const ref = mountRef(m, project);
    if (!ctx.volumes.get(ref.project, ref.name)) throw volumeNotFound(ref);
  }
}

/** The box's data volumes as the runtime mounts them. */
export function dataVolumesOf(ctx: EngineContext, row: BoxRow): BoxVolume[] {
  return row.data_mounts.map((m) => {
    const ref = mountRef(m, row.project);
    const volume = ctx.volumes.get(ref.project, ref.name);
    if (!volume || !ctx.pool.exists(volumeId(volume))) {
      throw new NotFoundError('ZOMG_VOLUME_NOT_FOUND', `volume "${ref.project}:${ref.name}" mounted by box "${row.project}:${row.name}" at ${m.path} is gone`, {
        hint: `detach it (zomg data detach ${row.project}:${row.name} ${m.name})`,
      });
    }
    return { hostPath: ctx.pool.hostPath(volumeId(volume)), boxPath: m.path, readOnly: m.read_only };
  });
}

/**
 * For `create --fork`: clones each volume the source box mounts into a box-owned volume
 * (`box-<prefix>-<12 hex>`) for the new box, mounted at the same path. The subvolumes are
 * placed now (undone by `r` on failure); `commit` inserts their rows and must run in the
 * transaction that inserts the new box.
 */
export async function forkDataMounts(
  ctx: EngineContext,
  r: Reverter,
  source: BoxRow,
  box: { id: string; project: string; name: string },
): Promise<{ mounts: DataMount[]; commit: () => void }> {
  const mounts: DataMount[] = [];
  const rows: VolumeRow[] = [];
  for (const m of source.data_mounts) {
    const ref = mountRef(m, source.project);
    const src = findVolume(ctx, ref);
    let name: string;
    do name = boxOwnedVolumeName(box.name, randomHex(6));
    while (ctx.volumes.get(box.project, name));
    const id = newVolumeId();
    await ctx.pool.snapshot(volumeId(src), volumeId({ id }), { readOnly: false });
    r.add('delete a forked volume', () => ctx.pool.delete(volumeId({ id }), { waitForSpace: true }));
    rows.push({ id, project: box.project, name, ownership: 'box_owned', owner_box_id: box.id, source: volumeLabel(ref, box.project), size_bytes: src.size_bytes, sized_at: null, created_at: isoNow(ctx) });
    mounts.push({ name, path: m.path, read_only: m.read_only });
  }
  return {
    mounts,
    commit: () => {
      for (const row of rows) ctx.volumes.insert(row);
    },
  };
}

/**
 * After a box's deletion completed: deletes the volumes it owned (box-owned volumes another
 * box still mounts become persistent instead). A crash before this leaves them to the
 * reconciler (box-owned volumes whose owner is gone).
 */
export async function deleteOwnedVolumes(ctx: EngineContext, boxId: string): Promise<void> {
  for (const row of ctx.volumes.ownedBy(boxId)) {
    await ctx.locks.with(
      volumeLockKey(row),
      async () => {
        const snapshots = ctx.volumes.snapshots(row.id).map((s) => s.name);
        const parents = ctx.volumes.backupParents(row.id).map((p) => p.name);
        const deleted = transaction(ctx.db, () => {
          if (attachmentsOf(ctx, row).length > 0) {
            ctx.volumes.makePersistent(row.id);
            return false;
          }
          ctx.volumes.delete(row.id);
          return true;
        });
        if (deleted) await removeVolumeSubvolumes(ctx, row, snapshots, parents);
      },
      { what: volumeWhat(row), timeoutMs: BOX_LOCK_TIMEOUT_MS },
    );
  }
}

