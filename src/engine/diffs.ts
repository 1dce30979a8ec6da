/**
 * Diffs of a box root against one of its snapshots (or between two snapshots). The live
 * root is captured by a temporary read-only snapshot — O(1), and it makes the comparison
 * consistent and safe against concurrent writes — which is always deleted afterwards.
 * Results stream: verified changes reach the sink in path order as they are known.
 */
import { BOX_MOUNT_ROOTS, isUnder } from '../core/box-layout.js';
import { type DiffEntryJson, diffEntryToJson } from '../core/diff.js';
import { checkPath } from '../core/input.js';
import { InvalidArgumentError, NotFoundError } from '../core/errors.js';
import { mountHolding } from '../core/volumes.js';
import type { BoxRef } from '../core/refs.js';
import type { DiffStatusHead, DiffStatusOptions, DiffStatusSink } from '../core/service.js';
import type { DiffStatus, FileDiff } from '../core/types.js';
import type { BoxRow } from '../db/boxes-repo.js';
import { diffFile as compareFile } from '../storage/diff/file.js';
import { snapshotId, findSnapshot, withBox } from './access.js';
import type { EngineContext } from './context.js';
import { deliverDiff } from './tree-diff.js';

/** What a root diff leaves out: the mount points of the volumes every box has, and the box's data-volume mount points. */
function excludedFor(box: BoxRow): (path: Buffer) => boolean {
  const roots = [...BOX_MOUNT_ROOTS, ...box.data_mounts.map((m) => m.path)].map((root) => Buffer.from(root));
  // Asked once per change: most paths (/usr, /var, /etc …) differ from every root in their
  // first name's first byte, which settles them without a comparison.
  const firsts = roots.every((root) => root.length > 1) ? new Set(roots.map((root) => root[1])) : undefined;
  return (path) => (firsts === undefined || firsts.has(path[1] as number)) && roots.some((root) => isUnder(path, root));
}

function againstName(ctx: EngineContext, box: BoxRow, against: string | undefined): string {
  if (against !== undefined) return findSnapshot(ctx, box, against).name;
  const latest = ctx.snapshots.list(box.id).at(-1);
  if (!latest) {
    throw new NotFoundError('ZOMG_NO_SNAPSHOT', `box "${box.name}" has no snapshots to diff against`, {
      hint: `create one with \`zomg snapshot create ${box.name}\`, or name one with --against`,
    });
  }
  return latest.name;
}

export async function diffStatus(ctx: EngineContext, ref: BoxRef, options: DiffStatusOptions = {}): Promise<DiffStatus> {
  let head: DiffStatusHead | undefined;
  const changes: DiffEntryJson[] = [];
  await diffStatusStream(ctx, ref, { head: (h) => void (head = h), change: (e) => void changes.push(diffEntryToJson(e)) }, options);
  return { ...(head as DiffStatusHead), changes };
}

/**
 * diffStatus, handed to `sink` as it is verified: the head once the method is known, then
 * each change in path order. The box lock (no snapshot deleted, no root swapped meanwhile)
 * and the temporary snapshot are held until the last change has been delivered.
 */
export async function diffStatusStream(ctx: EngineContext, ref: BoxRef, sink: DiffStatusSink, options: DiffStatusOptions = {}): Promise<void> {
  await withBox(
    ctx,
    ref,
    async ({ row: box, root }) => {
      const against = againstName(ctx, box, options.against);
      const oldId = snapshotId(box, against);
      const to = options.to !== undefined ? findSnapshot(ctx, box, options.to).name : null;
      await deliverDiff(ctx, sink, {
        oldId,
        to: to !== null ? { snapshot: snapshotId(box, to) } : { live: root, label: `diff-${box.id}` },
        head: (method) => ({ box: box.name, project: box.project, against, to, method }),
        excluded: excludedFor(box),
        ...(options.signal ? { signal: options.signal } : {}),
      });
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
      const mount = mountHolding(box.data_mounts, path);
      if (mount) {
        throw new InvalidArgumentError(`path "${path}" is on data volume "${mount.name}" (mounted at ${mount.path}), not part of the box root`, {
          code: 'ZOMG_PATH_EXCLUDED',
          hint: `diff the volume instead: zomg data diff file ${mount.name} <path inside the volume>`,
        });
      }
      const against = againstName(ctx, box, options.against);
      return ctx.pool.withTemporarySnapshot(root, `diff-${box.id}`, (live) =>
        compareFile(ctx.pool.hostPath(snapshotId(box, against)), ctx.pool.hostPath(live), path),
      );
    },
    { mutates: false },
  );
}
