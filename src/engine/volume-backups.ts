/**
 * Volume backups: btrfs send streams with data at a target (storage/backup-targets.ts), full
 * the first time and incremental afterwards. The parent of the next incremental backup is a
 * read-only snapshot kept in the pool (`volume-backups/<volume-id>/<name>`, one per volume
 * and target, recorded in `volume_backup_parents`). A restore verifies every stream of the
 * chain by sha256 before replaying any, receives the chain into staging (receive makes
 * read-only subvolumes), snapshots the last one writable, places it by rename, then records
 * it: afterwards the volume exists whole, or not at all.
 */
import { randomHex } from '../system/builtins.js';
import { ConflictError, PoolFullError, ToolError, UnprocessableError } from '../core/errors.js';
import type { CreateBackupOptions, RestoreBackupOptions } from '../core/service.js';
import type { Volume, VolumeBackup } from '../core/types.js';
import { nextSnapshotName } from '../core/versions.js';
import { type VolumeRef, backupNotFound, parseBackupName, volumeExists } from '../core/volumes.js';
import { transaction } from '../db/database.js';
import type { VolumeRow } from '../db/volumes-repo.js';
import { type BackupManifest, corrupt, openBackupTarget } from '../storage/backup-targets.js';
import { Reverter } from '../system/reverter.js';
import { BOX_LOCK_TIMEOUT_MS, mutation } from './access.js';
import { type EngineContext, isoNow } from './context.js';
import { volumeBackupId, volumeId, volumeLockKey, withVolume } from './volume-access.js';
import { getVolume } from './volumes.js';

const strip = (m: BackupManifest): VolumeBackup => ({
  name: m.name,
  volume: m.volume,
  project: m.project,
  kind: m.kind,
  parent: m.parent,
  sha256: m.sha256,
  stream_bytes: m.stream_bytes,
  volume_size_bytes: m.volume_size_bytes,
  created_at: m.created_at,
});

/**
 * Backs the volume up to the target: incremental against this target's previous backup
 * when its parent snapshot and manifest are both still there, else full.
 */
export async function createBackup(ctx: EngineContext, ref: VolumeRef, options: CreateBackupOptions): Promise<VolumeBackup> {
  const requested = options.name !== undefined ? parseBackupName(options.name) : undefined;
  const target = openBackupTarget(options.to);
  await target.checkWritable();
  return withVolume(ctx, ref, async (volume) => {
    const atTarget = await target.list({ project: volume.project, volume: volume.name });
    const localParents = ctx.volumes.backupParents(volume.id);
    const name = requested ?? nextSnapshotName([...atTarget.map((b) => b.name), ...localParents.map((p) => p.name)]);
    if (atTarget.some((b) => b.name === name)) {
      throw new ConflictError('ZOMG_BACKUP_EXISTS', `backup "${name}" of volume "${volume.name}" already exists at ${target.url}`, { hint: 'pick another --name, or omit it to get the next vN' });
    }
    if (localParents.some((p) => p.name === name && p.target !== target.url) || ctx.pool.exists(volumeBackupId(volume, name))) {
      throw new ConflictError('ZOMG_BACKUP_EXISTS', `backup name "${name}" of volume "${volume.name}" is in use by a backup at another target`, { hint: 'pick another --name' });
    }
    const parentRow = ctx.volumes.backupParent(volume.id, target.url);
    const parent =
      parentRow && ctx.pool.exists(volumeBackupId(volume, parentRow.name)) && atTarget.some((b) => b.name === parentRow.name) ? parentRow.name : null;
    const snap = volumeBackupId(volume, name);
    const manifest = await new Reverter().run(async (r) => {
      await ctx.pool.snapshot(volumeId(volume), snap, { readOnly: true });
      r.add('delete the backup snapshot', () => ctx.pool.delete(snap, { waitForSpace: true }));
      await ctx.fault('backup:snapshotted');
      r.add('remove the backup files', () => target.remove(volume.project, volume.name, name));
      const stream = ctx.pool.send(snap, parent !== null ? { parent: volumeBackupId(volume, parent) } : {});
      const written = await target.writeStream(volume.project, volume.name, name, stream);
      await ctx.fault('backup:stream-written');
      const m: BackupManifest = {
        format: 1,
        name,
        volume: volume.name,
        project: volume.project,
        kind: parent === null ? 'full' : 'incremental',
        parent,
        sha256: written.sha256,
        stream_bytes: written.bytes,
        volume_size_bytes: volume.size_bytes,
        created_at: isoNow(ctx),
        stream: `${name}.btrfs`,
      };
      await target.writeManifest(m);
      await ctx.fault('backup:manifest-written');
      transaction(ctx.db, () => ctx.volumes.setBackupParent({ volume_id: volume.id, target: target.url, name, created_at: m.created_at }));
      return m;
    });
    // The old parent is no longer needed (the new backup is the next one's parent). After
    // the commit: a failure here leaves garbage the reconciler removes.
    if (parentRow && parentRow.name !== name) await ctx.pool.delete(volumeBackupId(volume, parentRow.name)).catch(() => undefined);
    return strip(manifest);
  });
}

/** The backups at a target, oldest first per volume. */
export async function listBackups(_ctx: EngineContext, from: string, options: { project?: string; volume?: string } = {}): Promise<VolumeBackup[]> {
  const target = openBackupTarget(from);
  return (await target.list(options)).map(strip);
}

/** The chain that ends in `last`, full backup first; every manifest must be there. */
async function chainOf(target: ReturnType<typeof openBackupTarget>, last: BackupManifest): Promise<BackupManifest[]> {
  const chain = [last];
  const seen = new Set([last.name]);
  let at = last;
  while (at.parent !== null) {
    const parent = await target.read(at.project, at.volume, at.parent);
    if (!parent || seen.has(parent.name)) {
      throw new UnprocessableError('ZOMG_BACKUP_CHAIN_BROKEN', `backup ${at.project}/${at.volume}/${at.name} is incremental against "${at.parent}", which is ${parent ? 'part of a loop' : 'missing'} at ${target.url}`, {
        hint: 'restore a backup whose chain is whole (`zomg data backup list` shows each one\'s parent)',
      });
    }
    seen.add(parent.name);
    chain.unshift(parent);
    at = parent;
  }
  return chain;
}

/** Restores a backup (and the chain it needs) into a new volume. */
export async function restoreBackup(ctx: EngineContext, options: RestoreBackupOptions): Promise<Volume> {
  const backupName = options.backup !== undefined ? parseBackupName(options.backup) : undefined;
  const target = openBackupTarget(options.from);
  await target.checkReadable();
  const { source, to } = options;
  if (ctx.volumes.get(to.project, to.name)) throw volumeExists(to);
  let last: BackupManifest | undefined;
  if (backupName !== undefined) last = await target.read(source.project, source.name, backupName);
  else last = (await target.list({ project: source.project, volume: source.name })).at(-1);
  if (!last) throw backupNotFound(`${backupName ?? '(any)'} of volume "${source.project}:${source.name}"`, target.url);
  const chain = await chainOf(target, last);
  // Every stream is checked before anything is replayed.
  for (const m of chain) await target.verify(m);
  const final = last;
  await mutation(ctx, () =>
    ctx.locks.with(
      volumeLockKey(to),
      async () => {
        if (ctx.volumes.get(to.project, to.name)) throw volumeExists(to);
        const id = randomHex(8);
        const receiving = ctx.pool.newStaging('receive');
        let failed = true;
        try {
          await new Reverter().run(async (r) => {
            await ctx.pool.create(receiving);
            for (const m of chain) {
              try {
                await ctx.pool.receive(target.openStream(m), receiving);
              } catch (err) {
                if (err instanceof PoolFullError) throw err;
                if (err instanceof ToolError && err.code === 'ZOMG_RECEIVE_FAILED') throw corrupt(`${m.project}/${m.volume}/${m.name}`, `btrfs receive refused it (${err.message.replace(/^.*?: /, '')})`);
                throw err;
              }
              if (!(await ctx.pool.hasReceived(receiving, m.name))) throw corrupt(`${m.project}/${m.volume}/${m.name}`, 'its stream does not hold the subvolume its manifest names');
              await ctx.fault('backup-restore:received');
            }
            const staged = ctx.pool.newStaging('restored');
            await ctx.pool.snapshotReceived(receiving, final.name, staged);
            r.add('delete the staged volume', () => ctx.pool.delete(staged, { waitForSpace: true }));
            await ctx.pool.place(staged, volumeId({ id }), { readOnly: false });
            r.add('delete the restored volume', () => ctx.pool.delete(volumeId({ id }), { waitForSpace: true }));
            await ctx.fault('backup-restore:placed');
            const row: VolumeRow = {
              id,
              project: to.project,
              name: to.name,
              ownership: 'persistent',
              owner_box_id: null,
              source: `backup ${final.project}:${final.volume}/${final.name}`,
              size_bytes: final.volume_size_bytes,
              sized_at: null,
              created_at: isoNow(ctx),
            };
            transaction(ctx.db, () => {
              if (ctx.volumes.get(to.project, to.name)) throw volumeExists(to);
              ctx.volumes.insert(row);
            });
          });
          failed = false;
        } finally {
          // The received chain is scaffolding, whatever happened (a crash leaves it to the
          // reconciler); after a failure (perhaps a full pool) wait until its space is back.
          await ctx.pool.delete(receiving, { waitForSpace: failed }).catch(() => undefined);
        }
      },
      { what: `volume "${to.project}:${to.name}"`, timeoutMs: BOX_LOCK_TIMEOUT_MS },
    ),
  );
  return getVolume(ctx, to);
}
