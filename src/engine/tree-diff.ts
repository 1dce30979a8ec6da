/** The tree diff between two read-only subvolumes of the pool (diff status, and sizes from changes). */
import type { DiffEntry } from '../core/diff.js';
import { diffTrees } from '../storage/diff/index.js';
import type { SubvolumeId } from '../storage/layout.js';
import type { EngineContext } from './context.js';

/** The tree diff between two read-only subvolumes of the pool. */
export function diffSubvolumes(ctx: EngineContext, oldId: SubvolumeId, newId: SubvolumeId, signal?: AbortSignal): Promise<{ entries: DiffEntry[]; method: 'send' | 'walk' }> {
  const driver = ctx.pool.driver;
  return diffTrees({
    oldRoot: ctx.pool.hostPath(oldId),
    newRoot: ctx.pool.hostPath(newId),
    ...(driver.capabilities.sendStream ? { sendStream: () => ctx.pool.sendNoData(oldId, newId, signal ? { signal } : {}) } : {}),
    ...(driver.inodePaths ? { inodePaths: driver.inodePaths.bind(driver) } : {}),
    ...(signal ? { signal } : {}),
  });
}

