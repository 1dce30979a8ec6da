/**
 * The startup reconciler: brings the pool and the database back into agreement after a
 * crash. Staging leftovers of dead processes are deleted; rows whose subvolume is gone are
 * removed; subvolumes with no row are deleted — unless a live process registered them as
 * pending (it is between placing them and committing their row).
 */
import { existsSync, readdirSync } from 'node:fs';
import { rename, rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { transaction } from '../db/database.js';
import { isErrno, pidAlive } from '../system/fs.js';
import { pruneStaleBuilds } from './builds.js';
import { ConflictError } from '../core/errors.js';
import { boxLockKey } from './boxes.js';
import type { EngineContext } from './context.js';
import { ASIDE_MARK } from './snapshots.js';

function entries(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return [];
    throw err;
  }
}

export interface ReconcileReport {
  removedStaging: number;
  removedRows: number;
  removedSubvolumes: number;
  /** Builds killed mid-way whose images and containers were removed from the engine's store. */
  removedBuilds: number;
}

export async function reconcile(ctx: EngineContext): Promise<ReconcileReport> {
  const report: ReconcileReport = { removedStaging: 0, removedRows: 0, removedSubvolumes: 0, removedBuilds: 0 };
  const { paths, driver } = ctx;

  for (const name of entries(paths.staging)) {
    const pid = Number.parseInt(name, 10);
    if (Number.isInteger(pid) && pid > 0 && pidAlive(pid)) continue;
    if (name === 'podman') continue; // the container engine's own storage lives here
    await driver.deleteSubvolume(join(paths.staging, name));
    report.removedStaging++;
  }

  // Restores cut short: the old root was renamed aside. If the new root made it into place
  // the restore had committed and the aside copy is garbage; otherwise the old root goes back.
  for (const name of entries(paths.roots)) {
    const at = name.indexOf(ASIDE_MARK);
    if (at < 0) continue;
    const pid = Number.parseInt(name.slice(at + ASIDE_MARK.length), 10);
    if (pidAlive(pid)) continue;
    const root = join(paths.roots, name.slice(0, at));
    if (existsSync(root)) await driver.deleteSubvolume(join(paths.roots, name));
    else await rename(join(paths.roots, name), root);
  }

  const livePending = new Set<string>();
  for (const p of ctx.pending.all()) {
    if (pidAlive(p.pid)) livePending.add(p.path);
    else ctx.pending.remove(p.path);
  }

  // Rows whose subvolume is gone.
  transaction(ctx.db, () => {
    for (const v of ctx.bases.allVersions()) {
      if (existsSync(join(paths.bases, v.name))) continue;
      for (const alias of ctx.bases.aliasesOf(v.name)) ctx.bases.deleteAlias(alias);
      ctx.bases.deleteVersion(v.name);
      report.removedRows++;
    }
    for (const cp of ctx.checkpoints.all()) {
      if (existsSync(join(paths.checkpoints, cp.box_id, cp.name))) continue;
      ctx.checkpoints.delete(cp.box_id, cp.name);
      report.removedRows++;
    }
  });

  // Boxes whose root is gone — checked under the box's lock (skipped when it is busy): a
  // restore in another process has the root renamed aside for a moment.
  for (const id of ctx.boxes.ids()) {
    const row = ctx.boxes.byId(id);
    if (!row || existsSync(join(paths.roots, id))) continue;
    let lock;
    try {
      lock = await ctx.locks.acquire(boxLockKey(row), { timeoutMs: 0 });
    } catch (err) {
      if (err instanceof ConflictError) continue;
      throw err;
    }
    try {
      if (existsSync(join(paths.roots, id)) || !ctx.boxes.byId(id)) continue;
      transaction(ctx.db, () => ctx.boxes.delete(id));
      report.removedRows++;
    } finally {
      lock.release();
    }
  }

  // Run directories of boxes that no longer exist (their init is long gone).
  const runRoot = join(ctx.stateDir, 'run', 'boxes');
  for (const id of entries(runRoot)) {
    if (!ctx.boxes.byId(id)) await rm(join(runRoot, id), { recursive: true, force: true });
  }

  // Subvolumes with no row.
  const orphan = async (path: string): Promise<void> => {
    if (livePending.has(path)) return;
    await driver.deleteSubvolume(path);
    report.removedSubvolumes++;
  };
  for (const name of entries(paths.bases)) {
    if (!ctx.bases.versionExists(name)) await orphan(join(paths.bases, name));
  }
  for (const id of entries(paths.roots)) {
    if (id.includes(ASIDE_MARK)) continue;
    if (!ctx.boxes.byId(id)) await orphan(join(paths.roots, id));
  }
  for (const boxId of entries(paths.checkpoints)) {
    const known = ctx.boxes.byId(boxId) !== undefined;
    for (const name of entries(join(paths.checkpoints, boxId))) {
      if (!known || !ctx.checkpoints.get(boxId, name)) await orphan(join(paths.checkpoints, boxId, name));
    }
    if (!known) await rmdir(join(paths.checkpoints, boxId)).catch(() => undefined);
  }
  report.removedBuilds = await pruneStaleBuilds(ctx);
  return report;
}
