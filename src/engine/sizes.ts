/**
 * Sizes of immutable subvolumes (base versions, snapshots) are computed off the hot path
 * and stored. One worker at a time per state directory (the `sizes` lock; others leave at
 * once), and sizing costs what changed: a snapshot's size is its predecessor's (the
 * previous snapshot, or the base version the box was cloned from) plus the change between
 * them, read from the send stream the diff already parses; a full walk is needed only for
 * a subvolume with no sized predecessor (a base import, install or build).
 */
import type { SubvolumeId } from '../storage/layout.js';
import { fsPromises } from '../system/builtins.js';
import { isErrno } from '../system/fs.js';
import { baseId, snapshotId } from './access.js';
import type { EngineContext } from './context.js';
import { sizeVolumes, volumeSizesPending } from './volume-sizes.js';

let running: Promise<void> | undefined;

const SIZES_LOCK = 'sizes';

/** Asks for pending sizes to be computed: through the configured hook, else in-process in the background. */
export function scheduleSizes(ctx: EngineContext): void {
  if (ctx.options.onSizesPending) {
    ctx.options.onSizesPending();
    return;
  }
  running ??= computePendingSizes(ctx)
    .then(() => undefined)
    .catch(() => {
      /* sizes stay null and are retried on the next schedule */
    })
    .finally(() => {
      running = undefined;
    });
}

/** True when some size is still missing. */
function sizesPending(ctx: EngineContext): boolean {
  return ctx.bases.versionsWithoutSize().length > 0 || ctx.snapshots.withoutSize().length > 0 || volumeSizesPending(ctx);
}

/**
 * Computes and stores every missing size, unless another worker holds the sizes lock (it
 * will see this work: it checks again after letting the lock go). Returns false when it
 * left the work to that other worker.
 */
export async function computePendingSizes(ctx: EngineContext): Promise<boolean> {
  for (;;) {
    let lock;
    try {
      lock = await ctx.locks.acquire(SIZES_LOCK, { timeoutMs: 0, what: 'the size worker' });
    } catch {
      return false;
    }
    let progressed = false;
    try {
      while (sizesPending(ctx) && (await sizeOnePass(ctx))) progressed = true;
    } finally {
      lock.release();
    }
    // Work committed after our last look but while we held the lock is ours too: a worker
    // started for it found the lock taken and left. Nothing sizeable left: done.
    if (!progressed || !sizesPending(ctx)) return true;
  }
}

/** One pass over every missing size; false when nothing could be sized (all failed). */
async function sizeOnePass(ctx: EngineContext): Promise<boolean> {
  let progressed = false;
  for (const version of ctx.bases.versionsWithoutSize()) {
    const v = ctx.bases.getVersion(version);
    const parent = v?.provenance.build.parent_version ?? null;
    const parentSize = parent !== null ? ctx.bases.getVersion(parent)?.size_bytes : undefined;
    const size = await measure(ctx, baseId(version), parent !== null && typeof parentSize === 'number' ? { id: baseId(parent), size: parentSize } : undefined);
    if (size !== undefined) {
      ctx.bases.setVersionSize(version, size);
      progressed = true;
    }
  }
  for (const cp of ctx.snapshots.withoutSize()) {
    const predecessor = predecessorOf(ctx, cp.box_id, cp.name);
    const size = await measure(ctx, snapshotId({ id: cp.box_id }, cp.name), predecessor);
    if (size !== undefined) {
      ctx.snapshots.setSize(cp.box_id, cp.name, size);
      progressed = true;
    }
  }
  if (await sizeVolumes(ctx)) progressed = true;
  return progressed;
}

/** The sized subvolume a snapshot is best measured against: the previous sized snapshot of the box, else its base version. */
function predecessorOf(ctx: EngineContext, boxId: string, name: string): { id: SubvolumeId; size: number } | undefined {
  const list = ctx.snapshots.list(boxId);
  const at = list.findIndex((c) => c.name === name);
  for (let i = at - 1; i >= 0; i--) {
    const prev = list[i];
    if (prev && prev.size_bytes !== null) return { id: snapshotId({ id: boxId }, prev.name), size: prev.size_bytes };
  }
  const box = ctx.boxes.byId(boxId);
  const base = box ? ctx.bases.getVersion(box.base) : undefined;
  if (base && base.size_bytes !== null && ctx.pool.exists(baseId(base.name))) return { id: baseId(base.name), size: base.size_bytes };
  return undefined;
}

/** The size of `id`: from its predecessor and the change between them when it can, else a full walk. Undefined when it is gone. */
async function measure(ctx: EngineContext, id: SubvolumeId, predecessor: { id: SubvolumeId; size: number } | undefined): Promise<number | undefined> {
  if (!ctx.pool.exists(id)) return undefined;
  try {
    if (predecessor && ctx.pool.exists(predecessor.id) && ctx.pool.driver.capabilities.sendStream) {
      const incremental = await sizeFromChanges(ctx, predecessor, id);
      if (incremental !== undefined) return incremental;
    }
    return await ctx.pool.sizeBytes(id);
  } catch {
    return undefined; // deleted meanwhile, or unreadable: retried at the next schedule
  }
}

/**
 * `predecessor.size` plus, for every path the diff names, the new size minus the old (the
 * size counts regular files and symlinks, hard links once). Undefined when the shortcut
 * does not apply: a changed path with several hard links, or nested subvolumes (the send
 * stream does not cross into them).
 */
async function sizeFromChanges(ctx: EngineContext, predecessor: { id: SubvolumeId; size: number }, id: SubvolumeId): Promise<number | undefined> {
  if ((await ctx.pool.listNested(id)).length > 0 || (await ctx.pool.listNested(predecessor.id)).length > 0) return undefined;
  const { diffSubvolumes } = await import('./tree-diff.js');
  const { entries, method } = await diffSubvolumes(ctx, predecessor.id, id);
  if (method !== 'send') return undefined;
  const oldRoot = ctx.pool.hostPath(predecessor.id);
  const newRoot = ctx.pool.hostPath(id);
  let total = predecessor.size;
  const oldBytes = Buffer.from(oldRoot);
  const newBytes = Buffer.from(newRoot);
  for (const e of entries) {
    // Names are bytes: the paths stay Buffers end to end.
    const [before, after] = await Promise.all([counted(Buffer.concat([oldBytes, e.path])), counted(Buffer.concat([newBytes, e.path]))]);
    if (before === 'linked' || after === 'linked') return undefined;
    total += after - before;
  }
  return total;
}

/** What a path contributes to the size: st_size of a file or symlink, 0 otherwise; `linked` for a file with several links. */
async function counted(path: Buffer): Promise<number | 'linked'> {
  try {
    const st = await fsPromises().lstat(path);
    if (!st.isFile() && !st.isSymbolicLink()) return 0;
    if (st.isFile() && st.nlink > 1) return 'linked';
    return st.size;
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) return 0;
    throw err;
  }
}

/** Resolves when in-process size work (if any) is done. */
export async function sizesSettled(): Promise<void> {
  await running;
}
