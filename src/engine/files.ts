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
import { boxView } from '../runtime/sandbox.js';
import { packFromRoot, unpackIntoRoot } from '../storage/archive.js';
import { components } from '../system/rootpath.js';
import { boxLockKey, findBox, rootPath } from './boxes.js';
import type { EngineContext } from './context.js';
import { runDirOf } from './running.js';

const VOLUME_MOUNTS = ['home', 'box'];

/** The host directory that stands for the box's `/` for a copy of `path`. */
function treeOf(ctx: EngineContext, row: BoxRow, path: string): string {
  const view = boxView(runDirOf(ctx, row.id));
  if (view !== undefined) return view.root;
  const first = components(path)[0];
  if (first !== undefined && VOLUME_MOUNTS.includes(first)) {
    throw new ConflictError('ZOMG_BOX_STOPPED', `box "${row.project}:${row.name}" is stopped: /${first} is a volume, mounted only while the box runs`, {
      hint: `start it with \`zomg resume ${row.project}:${row.name}\``,
    });
  }
  return rootPath(ctx, row.id);
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
    await ctx.locks.with(
      boxLockKey(ref),
      async () => {
        const row = findBox(ctx, ref);
        await unpackIntoRoot(treeOf(ctx, row, path), path, input, options);
      },
      { what: `box "${ref.project}:${ref.name}"`, timeoutMs: 120_000 },
    );
  } finally {
    if (!input.readableEnded) input.resume();
  }
}
