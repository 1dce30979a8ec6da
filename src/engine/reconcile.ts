/**
 * The reconciler: brings the pool and the database back into agreement after a crash.
 * It runs only with the pool's `mutations` lock held EXCLUSIVELY (every mutation holds it
 * shared), so nothing it looks at is in flight: a subvolume without a row, or a row without
 * its subvolume, is the leftover of a process that died mid-mutation, never work another
 * process is about to commit. When the lock is busy it does nothing (a later run repairs).
 *
 * It repairs: staging leftovers of dead processes; swaps (restores) cut short — finished
 * when the new subvolume made it into place, undone otherwise; rows whose subvolume is
 * gone; subvolumes with no row; starts cut short that left an init unrecorded; the
 * runtime's state of deleted boxes; what a killed build left in the container store; the
 * same for data volumes, their snapshots and backup parents (engine/volume-reconcile.ts).
 */
import { transaction } from '../db/database.js';
import { poolClaimedBy } from '../storage/pool.js';
import { isAlive } from '../system/procfs.js';
import { MUTATIONS_LOCK, baseId, snapshotId, rootId, runtimeBox } from './access.js';
import { pruneStaleBuilds } from './builds.js';
import type { EngineContext } from './context.js';
import { repairVolumes } from './volume-reconcile.js';

export interface ReconcileReport {
  removedStaging: number;
  removedRows: number;
  removedSubvolumes: number;
  /** Swaps cut short that were finished or undone. */
  repairedSwaps: number;
  /** Inits left unrecorded by starts cut short, stopped. */
  stoppedStrays: number;
  /** Builds killed mid-way whose images and containers were removed from the engine's store. */
  removedBuilds: number;
}

/** True when a crash left something to repair (cheap: a few directory listings). */
export function reconcileNeeded(ctx: EngineContext): boolean {
  if (ctx.locks.staleShared(MUTATIONS_LOCK).length > 0) return true;
  if (ctx.pool.listStaging().some((s) => s.pid === undefined || !isAlive({ pid: s.pid }))) return true;
  return ctx.pool.listAsides().some((a) => !isAlive({ pid: a.pid }));
}

/** Repairs what crashes left (see the module comment); undefined when mutations are in flight, or the pool is no longer this state directory's. */
export async function reconcile(ctx: EngineContext): Promise<ReconcileReport | undefined> {
  // The pool was claimed at the engine's open; a server repairs every 30 s, and what it
  // deletes is only a crash's leftover while the pool is still this state directory's.
  if (!poolClaimedBy(ctx.pool.root, ctx.stateDir)) return undefined;
  const lock = ctx.locks.tryExclusive(MUTATIONS_LOCK);
  if (lock === undefined) return undefined;
  try {
    const report = await repair(ctx);
    ctx.locks.clearStaleShared(MUTATIONS_LOCK);
    return report;
  } finally {
    lock.release();
  }
}

async function repair(ctx: EngineContext): Promise<ReconcileReport> {
  const report: ReconcileReport = { removedStaging: 0, removedRows: 0, removedSubvolumes: 0, repairedSwaps: 0, stoppedStrays: 0, removedBuilds: 0 };
  const { pool } = ctx;

  // Work in progress of processes that are gone (a live one may be diffing: its own pid).
  for (const s of pool.listStaging()) {
    if (s.pid !== undefined && isAlive({ pid: s.pid })) continue;
    await pool.delete(s.id);
    report.removedStaging++;
  }

  // Swaps cut short: the target was renamed aside. If the new one made it into place the
  // swap had committed and the aside copy is garbage; otherwise the old one goes back.
  for (const aside of pool.listAsides()) {
    if (isAlive({ pid: aside.pid })) continue;
    if (pool.exists(aside.target)) await pool.deleteAside(aside.target, aside.name);
    else await pool.restoreAside(aside);
    report.repairedSwaps++;
  }

  // Rows whose subvolume is gone.
  transaction(ctx.db, () => {
    for (const v of ctx.bases.allVersions()) {
      if (pool.exists(baseId(v.name))) continue;
      for (const alias of ctx.bases.aliasesOf(v.name)) ctx.bases.deleteAlias(alias);
      ctx.bases.deleteVersion(v.name);
      report.removedRows++;
    }
    for (const cp of ctx.snapshots.all()) {
      if (pool.exists(snapshotId({ id: cp.box_id }, cp.name))) continue;
      ctx.snapshots.delete(cp.box_id, cp.name);
      report.removedRows++;
    }
  });
  for (const id of ctx.boxes.ids()) {
    const row = ctx.boxes.byId(id);
    if (!row || pool.exists(rootId(row))) continue;
    await ctx.runtime.remove(runtimeBox(ctx, row));
    transaction(ctx.db, () => ctx.boxes.delete(id)); // its snapshot rows cascade; their subvolumes are orphans below
    report.removedRows++;
  }

  // Subvolumes with no row.
  for (const version of pool.listBases()) {
    if (ctx.bases.versionExists(version)) continue;
    await pool.delete(baseId(version));
    report.removedSubvolumes++;
  }
  for (const id of pool.listRoots()) {
    if (ctx.boxes.byId(id)) continue;
    await ctx.runtime.remove(runtimeBox(ctx, { id }));
    await pool.delete(rootId({ id }));
    report.removedSubvolumes++;
  }
  for (const cp of pool.listSnapshots()) {
    if (ctx.snapshots.get(cp.box, cp.name)) continue;
    await pool.delete(snapshotId({ id: cp.box }, cp.name));
    report.removedSubvolumes++;
  }
  await repairVolumes(ctx, report);
  pool.pruneEmptyDirs();

  // Starts cut short (an init nobody recorded), and the runtime state of deleted boxes.
  for (const row of ctx.boxes.list()) if (await ctx.runtime.recover(runtimeBox(ctx, row))) report.stoppedStrays++;
  ctx.runtime.pruneState((id) => ctx.boxes.byId(id) !== undefined);

  report.removedBuilds = await pruneStaleBuilds(ctx);
  return report;
}
