/**
 * Diffs of a box root against one of its snapshots (or between two snapshots). The live
 * root is captured by a temporary read-only snapshot — O(1), and it makes the comparison
 * consistent and safe against concurrent writes — which is always deleted afterwards.
 */
import { BOX_MOUNT_ROOTS, isUnder } from '../core/box-layout.js';
import { diffEntryToJson } from '../core/diff.js';
import { checkPath } from '../core/input.js';
import { NotFoundError } from '../core/errors.js';
import type { BoxRef } from '../core/refs.js';
import type { DiffStatusOptions } from '../core/service.js';
import type { DiffStatus, FileDiff } from '../core/types.js';
import type { BoxRow } from '../db/boxes-repo.js';
import { diffFile as compareFile } from '../storage/diff/file.js';
import { checkpointId, findCheckpoint, withBox } from './access.js';
import type { EngineContext } from './context.js';
import { diffSubvolumes } from './tree-diff.js';

/** The mount points of the volumes every box has: never part of a root diff. */
const excluded = (path: Buffer): boolean => BOX_MOUNT_ROOTS.some((root) => isUnder(path, root));

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

/**
 * The box lock is held for the duration: a snapshot cannot be deleted, nor the root
 * swapped by a restore, while a diff reads them.
 */
export async function diffStatus(ctx: EngineContext, ref: BoxRef, options: DiffStatusOptions = {}): Promise<DiffStatus> {
  return withBox(
    ctx,
    ref,
    async ({ row: box, root }) => {
      const against = againstName(ctx, box, options.against);
      const oldId = checkpointId(box, against);
      let result;
      let to: string | null = null;
      if (options.to !== undefined) {
        to = findCheckpoint(ctx, box, options.to).name;
        result = await diffSubvolumes(ctx, oldId, checkpointId(box, to), options.signal);
      } else {
        result = await ctx.pool.withTemporarySnapshot(root, `diff-${box.id}`, (live) => diffSubvolumes(ctx, oldId, live, options.signal));
      }
      return {
        box: box.name,
        project: box.project,
        against,
        to,
        method: result.method,
        changes: result.entries.filter((e) => !excluded(e.path)).map(diffEntryToJson),
      };
    },
    { mutates: false },
  );
}

/** One file against a snapshot: compared directly, never through the whole tree diff. */
export async function diffFile(ctx: EngineContext, ref: BoxRef, path: string, options: { against?: string } = {}): Promise<FileDiff> {
  checkPath(path);
  return withBox(
    ctx,
    ref,
    async ({ row: box, root }) => {
      const against = againstName(ctx, box, options.against);
      return ctx.pool.withTemporarySnapshot(root, `diff-${box.id}`, (live) =>
        compareFile(ctx.pool.hostPath(checkpointId(box, against)), ctx.pool.hostPath(live), path),
      );
    },
    { mutates: false },
  );
}
