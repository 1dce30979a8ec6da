/**
 * How use cases reach what they change: every mutation holds the pool's `mutations` lock
 * SHARED (the reconciler takes it exclusively, so it never sees work in flight), then the
 * lock of what it changes (one box, or the bases). `withBox` = both locks, the row, and the
 * box's subvolume ids, computed once. One timeout policy for every box lock.
 */
import { boxNotFound, snapshotNotFound } from '../core/errors.js';
import { parseSnapshotName } from '../core/names.js';
import type { BoxRef } from '../core/refs.js';
import type { BoxRow, SnapshotRow } from '../db/boxes-repo.js';
import type { SubvolumeId } from '../storage/layout.js';
import type { RuntimeBox } from '../runtime/runtime.js';
import type { EngineContext } from './context.js';

/** The pool-wide lock every mutation holds shared and the reconciler exclusively. */
export const MUTATIONS_LOCK = 'mutations';
/** How long a mutation waits for a busy box (a restore or a long diff holds it). */
export const BOX_LOCK_TIMEOUT_MS = 120_000;
/** How long a mutation waits for the bases lock (a clone, a commit). */
const BASES_LOCK_TIMEOUT_MS = 120_000;

export const boxLockKey = (ref: { project: string; name: string }): string => `box-${ref.project}-${ref.name}`;
export const boxLabel = (ref: { project: string; name: string }): string => `box "${ref.project}:${ref.name}"`;

export const rootId = (box: { id: string }): SubvolumeId => ({ kind: 'root', box: box.id });
export const snapshotId = (box: { id: string }, name: string): SubvolumeId => ({ kind: 'snapshot', box: box.id, name });
export const baseId = (version: string): SubvolumeId => ({ kind: 'base', version });

/** What the runtime needs to know of a box. */
export const runtimeBox = (ctx: EngineContext, box: { id: string }): RuntimeBox => ({ id: box.id, root: ctx.pool.hostPath(rootId(box)) });

export function findBox(ctx: EngineContext, ref: BoxRef): BoxRow {
  const row = ctx.boxes.get(ref.project, ref.name);
  if (!row) throw boxNotFound(ref.project, ref.name);
  return row;
}

export function findSnapshot(ctx: EngineContext, box: BoxRow, name: string): SnapshotRow {
  parseSnapshotName(name);
  const row = ctx.snapshots.get(box.id, name);
  if (!row) throw snapshotNotFound(box.name, name);
  return row;
}

/** Runs `fn` as a mutation: under the shared pool lock (see the module comment). */
export async function mutation<T>(ctx: EngineContext, fn: () => Promise<T>): Promise<T> {
  const lock = await ctx.locks.acquireShared(MUTATIONS_LOCK, { what: 'the storage pool', timeoutMs: BOX_LOCK_TIMEOUT_MS });
  try {
    return await fn();
  } finally {
    lock.release();
  }
}

/** Runs `fn` holding the box's lock (and, for mutations, the shared pool lock), before the row is read. */
export async function withBoxLock<T>(ctx: EngineContext, ref: BoxRef, fn: () => Promise<T>, options: { mutates?: boolean } = {}): Promise<T> {
  const locked = (): Promise<T> => ctx.locks.with(boxLockKey(ref), fn, { what: boxLabel(ref), timeoutMs: BOX_LOCK_TIMEOUT_MS });
  return options.mutates === false ? locked() : mutation(ctx, locked);
}

export interface BoxAccess {
  row: BoxRow;
  /** The root's subvolume id. */
  root: SubvolumeId;
  /** The box as the runtime addresses it. */
  runtime: RuntimeBox;
}

/**
 * Lock the box, find its row, compute its ids, run `fn`. `mutates: false` for reads that
 * only need the box held still (a diff): they skip the pool lock.
 */
export function withBox<T>(ctx: EngineContext, ref: BoxRef, fn: (box: BoxAccess) => Promise<T>, options: { mutates?: boolean } = {}): Promise<T> {
  return withBoxLock(
    ctx,
    ref,
    () => {
      const row = findBox(ctx, ref);
      return fn({ row, root: rootId(row), runtime: runtimeBox(ctx, row) });
    },
    options,
  );
}

/** Runs `fn` holding the bases lock (naming, placing and deleting versions; cloning one). */
export function withBases<T>(ctx: EngineContext, fn: () => Promise<T>): Promise<T> {
  return ctx.locks.with('bases', fn, { what: 'base storage', timeoutMs: BASES_LOCK_TIMEOUT_MS });
}
