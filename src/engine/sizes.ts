/**
 * Sizes of immutable subvolumes (base versions, checkpoints) are computed once, off the hot
 * path, and stored: the measurement walks every file, so no command waits for it.
 */
import { join } from 'node:path';
import type { EngineContext } from './context.js';

let running: Promise<void> | undefined;

/** Asks for pending sizes to be computed: through the configured hook, else in-process in the background. */
export function scheduleSizes(ctx: EngineContext): void {
  if (ctx.options.onSizesPending) {
    ctx.options.onSizesPending();
    return;
  }
  running ??= computePendingSizes(ctx)
    .catch(() => {
      /* sizes stay null and are retried on the next schedule */
    })
    .finally(() => {
      running = undefined;
    });
}

/** Computes and stores every missing size. Safe to run in several processes at once. */
export async function computePendingSizes(ctx: EngineContext): Promise<void> {
  for (const version of ctx.bases.versionsWithoutSize()) {
    const size = await ctx.driver.sizeBytes(join(ctx.paths.bases, version)).catch(() => undefined);
    if (size !== undefined) ctx.bases.setVersionSize(version, size);
  }
  for (const cp of ctx.checkpoints.withoutSize()) {
    const size = await ctx.driver.sizeBytes(join(ctx.paths.checkpoints, cp.box_id, cp.name)).catch(() => undefined);
    if (size !== undefined) ctx.checkpoints.setSize(cp.box_id, cp.name, size);
  }
}

/** Resolves when in-process size work (if any) is done. */
export async function sizesSettled(): Promise<void> {
  await running;
}
