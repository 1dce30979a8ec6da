/**
 * Sizes of data volumes and their snapshots, measured by the size worker (engine/sizes.ts)
 * off the hot path. A snapshot is immutable: measured once. A live volume changes under its
 * boxes: SIZE is its last measurement, taken again when older than VOLUME_SIZE_MAX_AGE_MS
 * (a listing asks for it).
 */
import type { EngineContext } from './context.js';
import { isoNow } from './context.js';
import { VOLUME_SIZE_MAX_AGE_MS, volumeId, volumeSnapshotId } from './volume-access.js';

const staleBefore = (ctx: EngineContext): string => new Date(ctx.now().getTime() - VOLUME_SIZE_MAX_AGE_MS).toISOString();

export function volumeSizesPending(ctx: EngineContext): boolean {
  return ctx.volumes.snapshotsWithoutSize().length > 0 || ctx.volumes.staleSizes(staleBefore(ctx)).length > 0;
}

/** One pass; true when something was measured. */
export async function sizeVolumes(ctx: EngineContext): Promise<boolean> {
  let progressed = false;
  for (const s of ctx.volumes.snapshotsWithoutSize()) {
    const size = await measure(ctx, volumeSnapshotId({ id: s.volume_id }, s.name));
    if (size === undefined) continue;
    ctx.volumes.setSnapshotSize(s.volume_id, s.name, size);
    progressed = true;
  }
  for (const v of ctx.volumes.staleSizes(staleBefore(ctx))) {
    const at = isoNow(ctx);
    const size = await measure(ctx, volumeId(v));
    if (size === undefined) continue;
    ctx.volumes.setSize(v.id, size, at);
    progressed = true;
  }
  return progressed;
}

async function measure(ctx: EngineContext, id: Parameters<EngineContext['pool']['sizeBytes']>[0]): Promise<number | undefined> {
  if (!ctx.pool.exists(id)) return undefined;
  try {
    return await ctx.pool.sizeBytes(id);
  } catch {
    return undefined; // deleted or swapped meanwhile: measured at the next schedule
  }
}
