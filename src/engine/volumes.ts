/**
 * Data volumes (SPEC §7): project storage that outlives boxes. A volume is a subvolume
 * `volumes/<volume-id>` of the pool, never inside a root; boxes mount it (bwrap binds it,
 * `--ro-bind` for read-only), so root snapshots, restores, saves and diffs never hold its
 * data. Snapshots mirror box snapshots (vN names, conflicts, atomic restore by Pool.swap).
 *
 * Every mutation holds the pool's shared `mutations` lock and the volume's own lock; rows
 * are committed after the subvolume is in place, so a crash leaves only what the reconciler
 * removes (a subvolume without a row).
 */
import { ConflictError, InvalidArgumentError, NotFoundError } from '../core/errors.js';
import { type DiffEntryJson, diffEntryToJson } from '../core/diff.js';
import type { ProjectName } from '../core/names.js';
import type { BoxRef } from '../core/refs.js';
import type { CreateSnapshotOptions, CreateVolumeOptions, DataMountSpec, DiffStatusOptions, VolumeDiffStatusHead, VolumeDiffStatusSink } from '../core/service.js';
import type { Box, FileDiff, Volume, VolumeDiffStatus, VolumeSnapshot } from '../core/types.js';
import { nextSnapshotName } from '../core/versions.js';
import {
  type DataMount,
  type VolumeRef,
  checkMountSet,
  parseVolumeName,
  parseVolumeRef,
  parseVolumeSnapshotName,
  volumeExists,
  volumeLabel,
  volumeSnapshotNotFound,
} from '../core/volumes.js';
import type { BoxRow } from '../db/boxes-repo.js';
import { transaction } from '../db/database.js';
import type { VolumeRow, VolumeSnapshotRow } from '../db/volumes-repo.js';
import { diffFile as compareFile } from '../storage/diff/file.js';
import { Reverter } from '../system/reverter.js';
import { BOX_LOCK_TIMEOUT_MS, boxLockKey, boxLabel, findBox, mutation, withBox } from './access.js';
import { type EngineContext, isoNow } from './context.js';
import { startRow, statusOf, stopRow, withStatus } from './lifecycle.js';
import { scheduleSizes } from './sizes.js';
import { VOLUME_SIZE_MAX_AGE_MS, attachmentsOf, checkMountSpecs, findVolume, newVolumeId, removeVolumeSubvolumes, requireMountedVolumes, volumeId, volumeLockKey, volumeSnapshotId, volumeWhat, withVolume } from './volume-access.js';

function findSnapshot(ctx: EngineContext, volume: VolumeRow, name: string): VolumeSnapshotRow {
  parseVolumeSnapshotName(name);
  const row = ctx.volumes.snapshot(volume.id, name);
  if (!row) throw volumeSnapshotNotFound(volume.name, name);
  return row;
}

/** Runs `fn` holding the volume's lock (and, for mutations, the shared pool lock), with its row. */
function toVolume(ctx: EngineContext, row: VolumeRow): Volume {
  const owner = row.owner_box_id !== null ? ctx.boxes.byId(row.owner_box_id) : undefined;
  return {
    id: row.id,
    name: row.name,
    project: row.project,
    ownership: row.ownership,
    delete_with_owner: row.ownership === 'box_owned',
    owner: owner ? `${owner.project}:${owner.name}` : null,
    size_bytes: row.size_bytes,
    attached: attachmentsOf(ctx, row).map(({ box, mount }) => ({ box: box.name, project: box.project, path: mount.path, read_only: mount.read_only })),
    source: row.source,
    created_at: row.created_at,
  };
}

const toSnapshot = (volume: VolumeRow, row: VolumeSnapshotRow): VolumeSnapshot => ({
  name: row.name,
  volume: volume.name,
  project: volume.project,
  description: row.description,
  size_bytes: row.size_bytes,
  created_at: row.created_at,
});


// --- volumes -----------------------------------------------------------------------------

/** Creates an empty volume, or an O(1) clone of another volume (or of one of its snapshots). */
export async function createVolume(ctx: EngineContext, ref: VolumeRef, options: CreateVolumeOptions = {}): Promise<Volume> {
  parseVolumeName(ref.name);
  if (options.fromSnapshot !== undefined && options.from === undefined) {
    throw new InvalidArgumentError('--from-snapshot needs --from (the volume the snapshot belongs to)', { code: 'ZOMG_INVALID_ARGUMENT', hint: 'zomg data create <name> --from <volume> --from-snapshot <snapshot>' });
  }
  if (options.fromSnapshot !== undefined) parseVolumeSnapshotName(options.fromSnapshot);
  const row = await mutation(ctx, () =>
    ctx.locks.with(
      volumeLockKey(ref),
      async () => {
        if (ctx.volumes.get(ref.project, ref.name)) throw volumeExists(ref);
        const id = newVolumeId();
        const dest = volumeId({ id });
        let source: string | null = null;
        return new Reverter().run(async (r) => {
          if (options.from !== undefined) {
            const from = options.from;
            // The source is held still (no restore swaps it, no delete removes it) while it is cloned.
            await ctx.locks.with(
              volumeLockKey(from),
              async () => {
                const src = findVolume(ctx, from);
                if (options.fromSnapshot !== undefined) {
                  const snap = findSnapshot(ctx, src, options.fromSnapshot);
                  await ctx.pool.snapshot(volumeSnapshotId(src, snap.name), dest, { readOnly: false });
                  source = `${volumeLabel(from, ref.project)}@${snap.name}`;
                } else {
                  await ctx.pool.snapshot(volumeId(src), dest, { readOnly: false });
                  source = volumeLabel(from, ref.project);
                }
              },
              { what: volumeWhat(from), timeoutMs: BOX_LOCK_TIMEOUT_MS },
            );
          } else {
            await ctx.pool.create(dest);
          }
          r.add('delete the volume subvolume', () => ctx.pool.delete(dest, { waitForSpace: true }));
          await ctx.fault('volume:placed');
          const row: VolumeRow = { id, project: ref.project, name: ref.name, ownership: 'persistent', owner_box_id: null, source, size_bytes: null, sized_at: null, created_at: isoNow(ctx) };
          transaction(ctx.db, () => {
            if (ctx.volumes.get(ref.project, ref.name)) throw volumeExists(ref);
            ctx.volumes.insert(row);
          });
          return row;
        });
      },
      { what: volumeWhat(ref), timeoutMs: BOX_LOCK_TIMEOUT_MS },
    ),
  );
  scheduleSizes(ctx);
  return toVolume(ctx, row);
}

export function listVolumes(ctx: EngineContext, options: { project?: string } = {}): Volume[] {
  const rows = ctx.volumes.list(options.project);
  if (rows.some((r) => r.sized_at === null || Date.parse(r.sized_at) < ctx.now().getTime() - VOLUME_SIZE_MAX_AGE_MS)) scheduleSizes(ctx);
  return rows.map((row) => toVolume(ctx, row));
}

/** A live volume's size is measured again when it is older than this (SIZE is a recent measurement). */

export function getVolume(ctx: EngineContext, ref: VolumeRef): Volume {
  return toVolume(ctx, findVolume(ctx, ref));
}

const attachedError = (ref: VolumeRef, boxes: string[]): ConflictError =>
  new ConflictError('ZOMG_VOLUME_ATTACHED', `volume "${ref.project}:${ref.name}" is attached to ${boxes.length === 1 ? 'box' : 'boxes'} ${boxes.join(', ')}`, {
    hint: `detach it first (zomg data detach <box> ${ref.name}), or delete the ${boxes.length === 1 ? 'box' : 'boxes'}`,
  });

/** Deletes a volume that no box mounts, with its snapshots and backup parents. */
export async function deleteVolume(ctx: EngineContext, ref: VolumeRef): Promise<void> {
  await withVolume(ctx, ref, async (row) => {
    const snapshots = ctx.volumes.snapshots(row.id);
    const parents = ctx.volumes.backupParents(row.id);
    // The check and the delete are one transaction: no box can attach it in between.
    transaction(ctx.db, () => {
      const attached = attachmentsOf(ctx, row).map(({ box }) => `${box.project}:${box.name}`);
      if (attached.length > 0) throw attachedError(ref, attached);
      ctx.volumes.delete(row.id);
    });
    await ctx.fault('volume-delete:row-deleted');
    await removeVolumeSubvolumes(ctx, row, snapshots.map((s) => s.name), parents.map((p) => p.name));
  });
}

const runningError = (row: BoxRow): ConflictError =>
  new ConflictError('ZOMG_BOX_RUNNING', `box "${row.project}:${row.name}" is running: volumes are attached to and detached from stopped boxes`, {
    hint: `stop it first (zomg stop ${row.project}:${row.name}), then resume it (zomg resume ${row.project}:${row.name})`,
  });

/** Mounts a volume in a stopped box (from its next start on). */
export async function attachVolume(ctx: EngineContext, ref: BoxRef, spec: DataMountSpec): Promise<Box> {
  return withBox(ctx, ref, async ({ row }) => {
    const [mount] = checkMountSpecs(row.project, [spec]) as [DataMount];
    if (row.data_mounts.some((m) => m.name === mount.name)) {
      throw new ConflictError('ZOMG_VOLUME_ALREADY_ATTACHED', `volume "${mount.name}" is already attached to box "${row.project}:${row.name}"`, {
        hint: 'detach it first to mount it elsewhere',
      });
    }
    const mounts = [...row.data_mounts, mount];
    checkMountSet(mounts);
    if ((await statusOf(ctx, row)) === 'running') throw runningError(row);
    transaction(ctx.db, () => {
      requireMountedVolumes(ctx, row.project, [mount]);
      ctx.boxes.setDataMounts(row.id, mounts, isoNow(ctx));
    });
    return withStatus(ctx, findBox(ctx, ref));
  });
}

export async function detachVolume(ctx: EngineContext, ref: BoxRef, name: string): Promise<Box> {
  return withBox(ctx, ref, async ({ row }) => {
    const label = volumeLabel(parseVolumeRef(name, row.project as ProjectName), row.project);
    if (!row.data_mounts.some((m) => m.name === label)) {
      throw new NotFoundError('ZOMG_VOLUME_NOT_ATTACHED', `volume "${label}" is not attached to box "${row.project}:${row.name}"`, { hint: `run \`zomg info ${row.project}:${row.name}\`` });
    }
    if ((await statusOf(ctx, row)) === 'running') throw runningError(row);
    transaction(ctx.db, () => ctx.boxes.setDataMounts(row.id, row.data_mounts.filter((m) => m.name !== label), isoNow(ctx)));
    return withStatus(ctx, findBox(ctx, ref));
  });
}

// --- snapshots ---------------------------------------------------------------------------

export async function createVolumeSnapshot(ctx: EngineContext, ref: VolumeRef, options: CreateSnapshotOptions = {}): Promise<VolumeSnapshot> {
  const requested = options.name !== undefined ? parseVolumeSnapshotName(options.name) : undefined;
  const snapshot = await withVolume(ctx, ref, async (volume) => {
    const existing = ctx.volumes.snapshots(volume.id).map((s) => s.name);
    const name = requested ?? nextSnapshotName(existing);
    const dest = volumeSnapshotId(volume, name);
    if (existing.includes(name) || ctx.pool.exists(dest)) {
      throw new ConflictError('ZOMG_VOLUME_SNAPSHOT_EXISTS', `snapshot "${name}" of volume "${volume.name}" already exists`, { hint: 'pick another name, or omit it to get the next vN' });
    }
    const row: VolumeSnapshotRow = { volume_id: volume.id, name, description: options.description ?? '', size_bytes: null, created_at: isoNow(ctx) };
    return new Reverter().run(async (r) => {
      await ctx.pool.snapshot(volumeId(volume), dest, { readOnly: true });
      r.add('delete the snapshot subvolume', () => ctx.pool.delete(dest, { waitForSpace: true }));
      await ctx.fault('volume-snapshot:placed');
      transaction(ctx.db, () => ctx.volumes.insertSnapshot(row));
      return toSnapshot(volume, row);
    });
  });
  scheduleSizes(ctx);
  return snapshot;
}

export function listVolumeSnapshots(ctx: EngineContext, ref: VolumeRef): VolumeSnapshot[] {
  const volume = findVolume(ctx, ref);
  return ctx.volumes.snapshots(volume.id).map((row) => toSnapshot(volume, row));
}

/**
 * Replaces the volume with a writable clone of the snapshot, atomically (Pool.swap). Boxes
 * running with the volume mounted hold the old tree: they are stopped for the swap and
 * resumed afterwards (on the new tree, or the old one when the restore failed).
 */
export async function restoreVolumeSnapshot(ctx: EngineContext, ref: VolumeRef, name: string): Promise<VolumeSnapshot> {
  return withVolume(ctx, ref, async (volume) => {
    const snap = findSnapshot(ctx, volume, name);
    const boxes = attachmentsOf(ctx, volume)
      .map(({ box }) => box)
      .filter((b, i, all) => all.findIndex((x) => x.id === b.id) === i)
      .sort((a, b) => `${a.project}:${a.name}`.localeCompare(`${b.project}:${b.name}`));
    const locks = [];
    try {
      for (const box of boxes) locks.push(await ctx.locks.acquire(boxLockKey(box), { what: boxLabel(box), timeoutMs: BOX_LOCK_TIMEOUT_MS }));
      const stopped: BoxRow[] = [];
      for (const box of boxes) if (await stopRow(ctx, box)) stopped.push(box);
      let failure: unknown;
      let aside: string | undefined;
      try {
        aside = await new Reverter().run(async (r) => {
          const staged = ctx.pool.newStaging(`vrestore-${volume.id}`);
          await ctx.pool.snapshot(volumeSnapshotId(volume, snap.name), staged, { readOnly: false });
          r.add('delete the staged volume', () => ctx.pool.delete(staged, { waitForSpace: true }));
          return ctx.pool.swap(volumeId(volume), staged, {
            fault: (step) => ctx.fault(`volume-${step}`),
            commit: () => transaction(ctx.db, () => ctx.volumes.setSize(volume.id, snap.size_bytes, null)),
          });
        });
      } catch (err) {
        failure = err;
      }
      for (const box of stopped) {
        try {
          await startRow(ctx, ctx.boxes.byId(box.id) ?? box);
        } catch (err) {
          failure ??= err;
        }
      }
      if (failure !== undefined) throw failure;
      if (aside !== undefined) await ctx.pool.deleteAside(volumeId(volume), aside).catch(() => undefined);
      return toSnapshot(volume, snap);
    } finally {
      for (const lock of locks.reverse()) lock.release();
    }
  });
}

export async function deleteVolumeSnapshot(ctx: EngineContext, ref: VolumeRef, name: string): Promise<void> {
  await withVolume(ctx, ref, async (volume) => {
    const snap = findSnapshot(ctx, volume, name);
    transaction(ctx.db, () => ctx.volumes.deleteSnapshot(volume.id, snap.name));
    await ctx.pool.delete(volumeSnapshotId(volume, snap.name));
  });
}

// --- diffs -------------------------------------------------------------------------------

function againstName(ctx: EngineContext, volume: VolumeRow, against: string | undefined): string {
  if (against !== undefined) return findSnapshot(ctx, volume, against).name;
  const latest = ctx.volumes.snapshots(volume.id).at(-1);
  if (!latest) {
    throw new NotFoundError('ZOMG_NO_SNAPSHOT', `volume "${volume.name}" has no snapshots to diff against`, {
      hint: `create one with \`zomg data snapshot create ${volume.name}\`, or name one with --against`,
    });
  }
  return latest.name;
}

/** What changed in the volume since a snapshot: the same engine and output as root diffs (volumeDiffStatusStream, collected). */
export async function volumeDiffStatus(ctx: EngineContext, ref: VolumeRef, options: DiffStatusOptions = {}): Promise<VolumeDiffStatus> {
  let head: VolumeDiffStatusHead | undefined;
  const changes: DiffEntryJson[] = [];
  await volumeDiffStatusStream(ctx, ref, { head: (h) => void (head = h), change: (e) => void changes.push(diffEntryToJson(e)) }, options);
  return { ...(head as VolumeDiffStatusHead), changes };
}

/**
 * volumeDiffStatus, handed to `sink` as it is verified: the head once the method is known,
 * then each change in path order. The volume lock (no snapshot deleted, no restore swapping
 * the volume meanwhile) and the temporary snapshot of the live volume are held until the last
 * change has been delivered; a failing sink or an aborted signal ends the diff and releases both.
 */
export async function volumeDiffStatusStream(ctx: EngineContext, ref: VolumeRef, sink: VolumeDiffStatusSink, options: DiffStatusOptions = {}): Promise<void> {
  // Loaded on first use, as engine.ts loads the box diffs: most commands never diff.
  const { deliverDiff } = await import('./tree-diff.js');
  await withVolume(
    ctx,
    ref,
    async (volume) => {
      const against = againstName(ctx, volume, options.against);
      const to = options.to !== undefined ? findSnapshot(ctx, volume, options.to).name : null;
      await deliverDiff(ctx, sink, {
        oldId: volumeSnapshotId(volume, against),
        to: to !== null ? { snapshot: volumeSnapshotId(volume, to) } : { live: volumeId(volume), label: `vdiff-${volume.id}` },
        head: (method) => ({ volume: volume.name, project: volume.project, against, to, method }),
        ...(options.signal ? { signal: options.signal } : {}),
      });
    },
    { mutates: false },
  );
}

export async function volumeDiffFile(ctx: EngineContext, ref: VolumeRef, path: string, options: { against?: string } = {}): Promise<FileDiff> {
  return withVolume(
    ctx,
    ref,
    async (volume) => {
      const against = againstName(ctx, volume, options.against);
      return ctx.pool.withTemporarySnapshot(volumeId(volume), `vdiff-${volume.id}`, (live) =>
        compareFile(ctx.pool.hostPath(volumeSnapshotId(volume, against)), ctx.pool.hostPath(live), path),
      );
    },
    { mutates: false },
  );
}
