/** The tree diff between two read-only subvolumes of the pool (diff status, and sizes from changes). */
import type { DiffEntry } from '../core/diff.js';
import type { DiffSink } from '../core/service.js';
import { openDiff, type DiffMethod } from '../storage/diff/index.js';
import type { SubvolumeId } from '../storage/layout.js';
import type { EngineContext } from './context.js';

/** The tree diff between two read-only subvolumes of the pool, collected. */
export async function diffSubvolumes(ctx: EngineContext, oldId: SubvolumeId, newId: SubvolumeId, signal?: AbortSignal): Promise<{ entries: DiffEntry[]; method: DiffMethod }> {
  const { method, entries } = await openSubvolumeDiff(ctx, oldId, newId, signal);
  const out: DiffEntry[] = [];
  for await (const e of entries) out.push(e);
  return { entries: out, method };
}

/** The same diff, streamed: sorted entries as they are verified (see storage/diff `openDiff`). */
function openSubvolumeDiff(ctx: EngineContext, oldId: SubvolumeId, newId: SubvolumeId, signal?: AbortSignal): ReturnType<typeof openDiff> {
  const driver = ctx.pool.driver;
  return openDiff({
    oldRoot: ctx.pool.hostPath(oldId),
    newRoot: ctx.pool.hostPath(newId),
    ...(driver.treeReader ? { treeReader: driver.treeReader } : {}),
    ...(driver.capabilities.sendStream ? { sendStream: () => ctx.pool.sendNoData(oldId, newId, signal ? { signal } : {}) } : {}),
    ...(driver.inodePaths ? { inodePaths: driver.inodePaths.bind(driver) } : {}),
    ...(signal ? { signal } : {}),
  });
}

export interface DeliverDiff<H> {
  /** The snapshot the diff is against. */
  oldId: SubvolumeId;
  /** The other side: a snapshot, or a live subvolume captured by a temporary read-only snapshot. */
  to: { snapshot: SubvolumeId } | { live: SubvolumeId; label: string };
  /** The sink's head, once the method is known. */
  head: (method: DiffMethod) => H;
  /** Entries left out (a box's mount points). */
  excluded?: (path: Buffer) => boolean;
  signal?: AbortSignal;
}

/**
 * A diff handed to `sink` as it is verified: the head, then each change in path order. The
 * temporary snapshot (for a live side) is held until the last change has been delivered; a
 * failing sink or an aborted signal ends the diff. The caller holds the lock.
 */
export async function deliverDiff<H>(ctx: EngineContext, sink: DiffSink<H>, d: DeliverDiff<H>): Promise<void> {
  const run = async (newId: SubvolumeId): Promise<void> => {
    const { method, entries } = await openSubvolumeDiff(ctx, d.oldId, newId, d.signal);
    await sink.head(d.head(method));
    for await (const entry of entries) {
      if (d.excluded?.(entry.path)) continue;
      const wait = sink.change(entry);
      if (wait) await wait;
      // The diff checks the signal only every so often; a reader that left ends it here.
      d.signal?.throwIfAborted();
    }
  };
  if ('snapshot' in d.to) await run(d.to.snapshot);
  else await ctx.pool.withTemporarySnapshot(d.to.live, d.to.label, run, { withoutNested: true });
}
