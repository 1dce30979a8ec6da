/**
 * Diffs of a box root against one of its snapshots (or between two snapshots). The live
 * root is captured by a temporary read-only snapshot — O(1), and it makes the comparison
 * consistent and safe against concurrent writes — which is always deleted afterwards.
 */
import { diffEntryToJson } from '../core/diff.js';
import { InvalidArgumentError, NotFoundError } from '../core/errors.js';
import { mountHolding } from '../core/volumes.js';
import type { BoxRef } from '../core/refs.js';
import type { DiffStatusOptions } from '../core/service.js';
import type { DiffStatus, FileDiff } from '../core/types.js';
import type { BoxRow } from '../db/boxes-repo.js';
import { diffFile as compareFile } from '../storage/diff/file.js';
import { checkpointId, findCheckpoint, withBox } from './access.js';
import type { EngineContext } from './context.js';
import { diffSubvolumes } from './tree-diff.js';

/** Mount points of the volumes mounted into every box: never part of a root diff. */
const EXCLUDED = ['/home', '/box'].map((p) => Buffer.from(p));
const under = (path: Buffer, prefixes: readonly Buffer[]): boolean =>
  prefixes.some((prefix) => path.equals(prefix) || (path.length > prefix.length && path.subarray(0, prefix.length).equals(prefix) && path[prefix.length] === 0x2f));

/** What a root diff leaves out: the system mounts, and the box's data-volume mount points. */
const excludedOf = (box: BoxRow): Buffer[] => [...EXCLUDED, ...box.data_mounts.map((m) => Buffer.from(m.path))];

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
        changes: result.entries.filter((e) => !under(e.path, excludedOf(box))).map(diffEntryToJson),
      };
    },
    { mutates: false },
  );
}

/** One file against a snapshot: compared directly, never through the whole tree diff. */
export async function diffFile(ctx: EngineContext, ref: BoxRef, path: string, options: { against?: string } = {}): Promise<FileDiff> {
  return withBox(
    ctx,
    ref,
    async ({ row: box, root }) => {
      const mount = mountHolding(box.data_mounts, path);
      if (mount) {
        throw new InvalidArgumentError(`path "${path}" is on data volume "${mount.name}" (mounted at ${mount.path}), not part of the box root`, {
          code: 'ZOMG_PATH_EXCLUDED',
          hint: `diff the volume instead: zomg data diff file ${mount.name} <path inside the volume>`,
        });
      }
      const against = againstName(ctx, box, options.against);
      return ctx.pool.withTemporarySnapshot(root, `diff-${box.id}`, (live) =>
        compareFile(ctx.pool.hostPath(checkpointId(box, against)), ctx.pool.hostPath(live), path),
      );
    },
    { mutates: false },
  );
}
