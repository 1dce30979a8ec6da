/**
 * Diffs of a box root against one of its snapshots (or between two snapshots). The live
 * root is captured by a temporary read-only snapshot — O(1), and it makes the comparison
 * consistent and safe against concurrent writes — which is always deleted afterwards.
 */
import { checkPath } from '../core/input.js';
import { mkdir } from 'node:fs/promises';
import { type DiffEntry, diffEntryToJson } from '../core/diff.js';
import { NotFoundError } from '../core/errors.js';
import type { BoxRef } from '../core/refs.js';
import type { DiffStatusOptions } from '../core/service.js';
import type { DiffStatus, FileDiff } from '../core/types.js';
import type { BoxRow } from '../db/boxes-repo.js';
import { diffFile as compareFile } from '../storage/diff/file.js';
import { diffTrees } from '../storage/diff/index.js';
import { boxLockKey, findBox, rootPath } from './boxes.js';
import type { EngineContext } from './context.js';
import { checkpointPath, findCheckpoint } from './snapshots.js';

/** Mount points of the volumes mounted into every box: never part of a root diff. */
const EXCLUDED = ['/home', '/box'].map((p) => Buffer.from(p));
const excluded = (path: Buffer): boolean =>
  EXCLUDED.some((prefix) => path.equals(prefix) || (path.length > prefix.length && path.subarray(0, prefix.length).equals(prefix) && path[prefix.length] === 0x2f));

function againstName(ctx: EngineContext, box: BoxRow, against: string | undefined): string {
  if (against !== undefined) return findCheckpoint(ctx, box, against).name;
  const latest = ctx.checkpoints.list(box.id).at(-1);
  if (!latest) {
    throw new NotFoundError('ZOMG_NO_SNAPSHOT', `box "${box.name}" has no snapshots to diff against`, {
      hint: `create one with \`zomg snapshot create ${box.name}\`, or name one with --against`,
    });
  }
  return latest.name;
}

/** Runs `fn` with a temporary read-only snapshot of the box root, deleted afterwards whatever happens. */
async function withLiveSnapshot<T>(ctx: EngineContext, box: BoxRow, fn: (path: string) => Promise<T>): Promise<T> {
  await mkdir(ctx.paths.staging, { recursive: true });
  const tmp = ctx.stagingPath(`diff-${box.id}`);
  await ctx.driver.snapshot(rootPath(ctx, box.id), tmp, { readOnly: true });
  try {
    return await fn(tmp);
  } finally {
    // The diff's own result (or error) is what the caller gets; a failed delete is retried
    // once, and whatever still remains is removed by the reconciler once this process is gone.
    await ctx.driver.deleteSubvolume(tmp).catch(() => ctx.driver.deleteSubvolume(tmp)).catch(() => undefined);
  }
}

/**
 * The box lock is held for the duration: a snapshot cannot be deleted, nor the root
 * swapped by a restore, while a diff reads them.
 */
export async function diffStatus(ctx: EngineContext, ref: BoxRef, options: DiffStatusOptions = {}): Promise<DiffStatus> {
  return ctx.locks.with(boxLockKey(ref), async () => {
    const box = findBox(ctx, ref);
    const against = againstName(ctx, box, options.against);
    const oldRoot = checkpointPath(ctx, box.id, against);
    const run = async (newRoot: string): Promise<{ entries: DiffEntry[]; method: 'send' | 'walk' }> =>
      diffTrees({
        oldRoot,
        newRoot,
        ...(ctx.driver.capabilities.sendStream ? { sendStream: () => ctx.driver.sendNoData(oldRoot, newRoot, options.signal ? { signal: options.signal } : {}) } : {}),
        ...(ctx.driver.inodePaths ? { inodePaths: ctx.driver.inodePaths.bind(ctx.driver) } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
      });
    let result;
    let to: string | null = null;
    if (options.to !== undefined) {
      to = findCheckpoint(ctx, box, options.to).name;
      result = await run(checkpointPath(ctx, box.id, to));
    } else {
      result = await withLiveSnapshot(ctx, box, run);
    }
    return {
      box: box.name,
      project: box.project,
      against,
      to,
      method: result.method,
      changes: result.entries.filter((e) => !excluded(e.path)).map(diffEntryToJson),
    };
  }, { what: `box "${ref.project}:${ref.name}"`, timeoutMs: 120_000 });
}

/** One file against a snapshot: compared directly, never through the whole tree diff. */
export async function diffFile(ctx: EngineContext, ref: BoxRef, path: string, options: { against?: string } = {}): Promise<FileDiff> {
  checkPath(path);
  return ctx.locks.with(boxLockKey(ref), async () => {
    const box = findBox(ctx, ref);
    const against = againstName(ctx, box, options.against);
    return withLiveSnapshot(ctx, box, (live) => compareFile(checkpointPath(ctx, box.id, against), live, path));
  }, { what: `box "${ref.project}:${ref.name}"`, timeoutMs: 120_000 });
}
