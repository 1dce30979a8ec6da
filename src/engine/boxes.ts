/** Box use cases: create (from a base or a fork), list, get, update, delete. */
import { randomHex } from '../system/builtins.js';
import { ConflictError, InvalidArgumentError } from '../core/errors.js';
import { parseBoxConfig } from '../core/limits.js';
import { parseEnvAssignment, parseTag } from '../core/names.js';
import { boxKey, pageOf } from '../core/paging.js';
import type { BoxRef } from '../core/refs.js';
import type { CreateBoxOptions, ListBoxesOptions } from '../core/service.js';
import type { Box } from '../core/types.js';
import type { BoxRow } from '../db/boxes-repo.js';
import { transaction } from '../db/database.js';
import { Reverter } from '../system/reverter.js';
import { baseId, snapshotId, findBox, mutation, rootId, runtimeBox, withBases, withBox, withBoxLock } from './access.js';
import { type EngineContext, isoNow } from './context.js';
import { startRow, stopRow, withStatus } from './lifecycle.js';
import { resolveBase } from './versions.js';
import { checkMountSpecs, deleteOwnedVolumes, forkDataMounts, requireMountedVolumes } from './volume-access.js';
import { checkMountSet } from '../core/volumes.js';
import type { DataMount } from '../core/types.js';

const DEFAULT_BASE = 'box-base';

function validateMaps(options: CreateBoxOptions): { tags: Record<string, string>; environment: Record<string, string> } {
  const tags: Record<string, string> = {};
  for (const [k, v] of Object.entries(options.tags ?? {})) {
    const [key, value] = parseTag(`${k}=${v}`);
    tags[key] = value;
  }
  const environment: Record<string, string> = {};
  for (const [k, v] of Object.entries(options.environment ?? {})) {
    const [key, value] = parseEnvAssignment(`${k}=${v}`);
    environment[key] = value;
  }
  return { tags, environment };
}

/** Creates a box whose root is a writable snapshot of a base version (or of another box's root). */
export async function createBox(ctx: EngineContext, ref: BoxRef, options: CreateBoxOptions = {}): Promise<Box> {
  if (options.base !== undefined && options.fork !== undefined) {
    throw new InvalidArgumentError('--base and --fork cannot be used together', { code: 'ZOMG_INVALID_ARGUMENT', hint: 'a fork clones the source box, which already has a base' });
  }
  const { tags, environment } = validateMaps(options);
  const requested = checkMountSpecs(ref.project, options.dataMounts ?? []);
  const config = parseBoxConfig(options);
  if (config.privileged && config.publish.length > 0) {
    throw new InvalidArgumentError('--publish cannot be used with --privileged: a privileged box uses the host\'s network, its ports are the host\'s', {
      code: 'ZOMG_INVALID_PUBLISH',
    });
  }
  return withBoxLock(ctx, ref, async () => {
    if (ctx.boxes.get(ref.project, ref.name)) throw boxExists(ref);
    requireMountedVolumes(ctx, ref.project, requested);
    // Checked before anything is made; the start checks again (slirp4netns binds them).
    if (options.start !== false) await ctx.runtime.checkPublish(config.publish);
    const id = randomHex(8);
    const root = rootId({ id });
    const now = isoNow(ctx);
    let base = '';
    let dataMounts: DataMount[] = requested;
    let commitForked = (): void => undefined;
    return new Reverter().run(async (r) => {
      // The source is held still while it is cloned: a forked box's lock (no restore swaps its
      // root meanwhile), or the bases lock (no version is deleted meanwhile).
      if (options.fork) {
        await withBox(
          ctx,
          options.fork,
          async (src) => {
            base = src.row.base;
            await ctx.pool.snapshot(src.root, root, { readOnly: false });
            r.add('delete box root', () => ctx.pool.delete(root));
            // The source's data volumes are cloned into volumes this box owns (SPEC §7).
            const forked = await forkDataMounts(ctx, r, src.row, { id, project: ref.project, name: ref.name });
            dataMounts = [...forked.mounts, ...requested];
            checkMountSet(dataMounts);
            commitForked = forked.commit;
          },
          { mutates: false }, // the shared pool lock is held already
        );
      } else {
        await withBases(ctx, async () => {
          const version = resolveBase(ctx, options.base ?? DEFAULT_BASE);
          base = version.name;
          await ctx.pool.snapshot(baseId(version.name), root, { readOnly: false });
        });
        r.add('delete box root', () => ctx.pool.delete(root));
      }
      const row: BoxRow = { id, project: ref.project, name: ref.name, base, tags, environment, data_mounts: dataMounts, config, created_at: now, updated_at: now };
      await ctx.fault('create:snapshotted');
      transaction(ctx.db, () => {
        if (ctx.boxes.get(ref.project, ref.name)) throw boxExists(ref);
        requireMountedVolumes(ctx, ref.project, requested);
        ctx.boxes.insert(row);
        commitForked();
      });
      r.add('forget the box', () =>
        transaction(ctx.db, () => {
          for (const v of ctx.volumes.ownedBy(id)) ctx.volumes.delete(v.id);
          ctx.boxes.delete(id);
        }),
      );
      if (options.start !== false) {
        await startRow(ctx, row);
        r.add('stop the box', () => ctx.runtime.remove(runtimeBox(ctx, row)));
      }
      return withStatus(ctx, row);
    });
  });
}

const boxExists = (ref: BoxRef): ConflictError =>
  new ConflictError('ZOMG_BOX_EXISTS', `box "${ref.project}:${ref.name}" already exists`, { hint: 'pick another name, or delete the existing box' });

export async function listBoxes(ctx: EngineContext, options: ListBoxesOptions = {}): Promise<Box[]> {
  let rows = ctx.boxes.list(options.project);
  if (options.prefix) rows = rows.filter((b) => b.name.startsWith(options.prefix as string));
  for (const [k, v] of Object.entries(options.tags ?? {})) rows = rows.filter((b) => b.tags[k] === v);
  rows = pageOf(rows, boxKey, options).items;
  return Promise.all(rows.map((row) => withStatus(ctx, row)));
}

export async function getBox(ctx: EngineContext, ref: BoxRef): Promise<Box> {
  return withStatus(ctx, findBox(ctx, ref));
}

/**
 * Deletes a box: stops it and everything still holding its root, removes the row (the box
 * is gone for every reader at that instant; its snapshot rows cascade), then the
 * subvolumes. A crash after the row leaves subvolumes without a row, which the reconciler
 * deletes; it never leaves a half-deleted box.
 */
export async function deleteBox(ctx: EngineContext, ref: BoxRef): Promise<void> {
  await withBox(ctx, ref, async ({ row, root, runtime }) => {
    await stopRow(ctx, row);
    await ctx.runtime.remove(runtime);
    const snapshots = ctx.snapshots.list(row.id);
    transaction(ctx.db, () => ctx.boxes.delete(row.id));
    await ctx.fault('delete:row-deleted');
    for (const s of snapshots) await ctx.pool.delete(snapshotId(row, s.name));
    await ctx.pool.delete(root);
    await deleteOwnedVolumes(ctx, row.id);
  });
}

export async function updateBox(
  ctx: EngineContext,
  ref: BoxRef,
  fields: { tags?: Record<string, string>; environment?: Record<string, string> },
): Promise<Box> {
  const { tags, environment } = validateMaps(fields);
  return mutation(ctx, () =>
    withBox(
      ctx,
      ref,
      async ({ row }) => {
        ctx.boxes.update(row.id, {
          ...(fields.tags !== undefined ? { tags } : {}),
          ...(fields.environment !== undefined ? { environment } : {}),
          updatedAt: isoNow(ctx),
        });
        return withStatus(ctx, findBox(ctx, ref));
      },
      { mutates: false },
    ),
  );
}
