/**
 * Copying files in and out of a box (`zomg cp`, `GET|PUT …/files`).
 *
 * Which tree a path names: a running box's own view (`/proc/<init>/root`: its root plus
 * the volumes mounted in it, /home, /box/…, data volumes), so a copy lands where the box's
 * processes look; a stopped box's root subvolume. Paths under the volume mountpoints
 * (/home, /box) of a stopped box are refused: their contents are not in the root, and a
 * write there would be hidden under the mount once the box runs again.
 */
import type { Readable, Writable } from 'node:stream';
import type { CopyToBoxOptions } from '../core/console-protocol.js';
import { ConflictError } from '../core/errors.js';
import type { BoxRef } from '../core/refs.js';
import type { BoxRow } from '../db/boxes-repo.js';
import { BOX_MOUNT_ROOTS, isUnder } from '../core/box-layout.js';
import { packFromRoot, unpackIntoRoot } from '../storage/archive.js';
import { components } from '../system/rootpath.js';
import { findBox, runtimeBox, withBoxLock } from './access.js';
import type { EngineContext } from './context.js';

/** The host directory that stands for the box's `/` for a copy of `path`. */
function treeOf(ctx: EngineContext, row: BoxRow, path: string): string {
  const box = runtimeBox(ctx, row);
  const view = ctx.runtime.view(box);
  if (view !== undefined) return view;
  const first = components(path)[0];
  if (first !== undefined && BOX_MOUNT_ROOTS.some((root) => isUnder(`/${first}`, root))) {
    throw new ConflictError('ZOMG_BOX_STOPPED', `box "${row.project}:${row.name}" is stopped: /${first} is a volume, mounted only while the box runs`, {
      hint: `start it with \`zomg resume ${row.project}:${row.name}\``,
    });
  }
  return box.root;
}

/** Writes a tar stream of `path` in the box to `out` (see storage/archive.ts `packFromRoot`). Running or stopped boxes. */
export async function copyFromBox(ctx: EngineContext, ref: BoxRef, path: string, out: Writable, options: { signal?: AbortSignal } = {}): Promise<void> {
  const row = findBox(ctx, ref);
  await packFromRoot(treeOf(ctx, row, path), path, out, options);
}

/**
 * Extracts the tar stream `input` at `path` in the box (see storage/archive.ts
 * `unpackIntoRoot`), under the box's lock so that no restore swaps the root mid-copy.
 */
export async function copyToBox(ctx: EngineContext, ref: BoxRef, path: string, input: Readable, options: CopyToBoxOptions = {}): Promise<void> {
  try {
    await withBoxLock(
      ctx,
      ref,
      async () => {
        const row = findBox(ctx, ref);
        await unpackIntoRoot(treeOf(ctx, row, path), path, input, options);
      },
      { mutates: false },
    );
  } finally {
    if (!input.readableEnded) input.resume();
  }
}
