/** Box use cases: create (from a base or a fork), list, get, delete. */
import { randomBytes } from 'node:crypto';
import { rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ConflictError, InvalidArgumentError, boxNotFound } from '../core/errors.js';
import { parseEnvAssignment, parseTag } from '../core/names.js';
import { boxKey, pageOf } from '../core/paging.js';
import type { BoxRef } from '../core/refs.js';
import type { CreateBoxOptions, ListBoxesOptions } from '../core/service.js';
import type { Box } from '../core/types.js';
import type { BoxRow } from '../db/boxes-repo.js';
import { transaction } from '../db/database.js';
import { isErrno } from '../system/fs.js';
import { Reverter } from '../system/reverter.js';
import { resolveBase, versionPath } from './bases.js';
import { type EngineContext, isoNow } from './context.js';
import { runDirOf, startRow, stopRow, withStatus } from './running.js';

export const DEFAULT_BASE = 'box-base';

export const rootPath = (ctx: EngineContext, boxId: string): string => join(ctx.paths.roots, boxId);
export const boxLockKey = (ref: { project: string; name: string }): string => `box-${ref.project}-${ref.name}`;


export function findBox(ctx: EngineContext, ref: BoxRef): BoxRow {
  const row = ctx.boxes.get(ref.project, ref.name);
  if (!row) throw boxNotFound(ref.project, ref.name);
  return row;
}

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
  return ctx.locks.with(boxLockKey(ref), async () => {
    if (ctx.boxes.get(ref.project, ref.name)) throw boxExists(ref);
    const id = randomBytes(8).toString('hex');
    const root = rootPath(ctx, id);
    const now = isoNow(ctx);
    let base = '';
    return new Reverter().run(async (r) => {
      ctx.pending.add(root, process.pid, now);
      r.add('forget pending', () => ctx.pending.remove(root));
      // The source is held still while it is cloned: a forked box's lock (no restore swaps its
      // root meanwhile), or the bases lock (no version is deleted meanwhile).
      if (options.fork) {
        const fork = options.fork;
        await ctx.locks.with(boxLockKey(fork), async () => {
          const src = findBox(ctx, fork);
          base = src.base;
          await ctx.driver.snapshot(rootPath(ctx, src.id), root, { readOnly: false });
        }, { what: `box "${fork.project}:${fork.name}"`, timeoutMs: 120_000 });
      } else {
        await ctx.locks.with('bases', async () => {
          const version = resolveBase(ctx, options.base ?? DEFAULT_BASE);
          base = version.name;
          await ctx.driver.snapshot(versionPath(ctx, version.name), root, { readOnly: false });
        }, { what: 'base storage', timeoutMs: 120_000 });
      }
      r.add('delete box root', () => ctx.driver.deleteSubvolume(root));
      const row: BoxRow = { id, project: ref.project, name: ref.name, base, tags, environment, data_mounts: [], created_at: now, updated_at: now };
      await ctx.fault('create:snapshotted');
      transaction(ctx.db, () => {
        if (ctx.boxes.get(ref.project, ref.name)) throw boxExists(ref);
        ctx.boxes.insert(row);
        ctx.pending.remove(root);
      });
      r.add('forget the box', () => transaction(ctx.db, () => ctx.boxes.delete(id)));
      if (options.start !== false) {
        await startRow(ctx, row);
        r.add('stop the box', () => stopRow(ctx, row));
      }
      return withStatus(ctx, row);
    });
  }, { what: `box "${ref.project}:${ref.name}"` });
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

/** Deletes a box (stopping it first), its snapshots and its root. Rows go first; the subvolumes (irreversible) last. */
export async function deleteBox(ctx: EngineContext, ref: BoxRef): Promise<void> {
  await ctx.locks.with(boxLockKey(ref), async () => {
    const row = findBox(ctx, ref);
    await stopRow(ctx, row);
    const checkpoints = ctx.checkpoints.list(row.id);
    transaction(ctx.db, () => ctx.boxes.delete(row.id)); // checkpoints cascade
    for (const cp of checkpoints) await ctx.driver.deleteSubvolume(join(ctx.paths.checkpoints, row.id, cp.name));
    await rmdir(join(ctx.paths.checkpoints, row.id)).catch((err: unknown) => {
      if (!isErrno(err, 'ENOENT')) throw err;
    });
    await ctx.driver.deleteSubvolume(rootPath(ctx, row.id));
    await rm(runDirOf(ctx, row.id), { recursive: true, force: true });
  }, { what: `box "${ref.project}:${ref.name}"` });
}

export async function updateBox(
  ctx: EngineContext,
  ref: BoxRef,
  fields: { tags?: Record<string, string>; environment?: Record<string, string> },
): Promise<Box> {
  const { tags, environment } = validateMaps(fields);
  return ctx.locks.with(boxLockKey(ref), async () => {
    const row = findBox(ctx, ref);
    ctx.boxes.update(row.id, {
      ...(fields.tags !== undefined ? { tags } : {}),
      ...(fields.environment !== undefined ? { environment } : {}),
      updatedAt: isoNow(ctx),
    });
    return withStatus(ctx, findBox(ctx, ref));
  }, { what: `box "${ref.project}:${ref.name}"` });
}
