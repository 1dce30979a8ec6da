/**
 * The full-walk diff: the same contract as the send-stream path (verify.ts states the
 * rules), computed by a merge walk of both trees. It is the fallback when no send stream
 * can be had (not btrfs, unrelated snapshots, a stream we do not understand) and the
 * oracle the fast path is tested against. Cost: O(entries in both trees), plus reading
 * every regular file whose size did not change, plus a few `getfattr` runs (in the
 * background, overlapping the walk) for the xattrs.
 *
 * No shortcut on "same inode number + same ctime + same size": btrfs snapshots keep inode
 * numbers and a write always moves ctime, but ctime comes from a coarse clock, the wall
 * clock can step back, and inode numbers can be reused after deletions, so equality is
 * not proof of equal content (snapper's walk trusts equal mtime, which a user can set).
 * The oracle must not guess; it compares bytes.
 *
 * The syscalls are synchronous (several times faster than fs.promises for 100k entries,
 * research/machine.md §4) and the walk yields to the event loop every 1000 entries.
 */
import type { DiffEntry } from '../../core/diff.js';
import { DiffCollector, Pacer, Tree, joinRel } from './verify.js';

export interface WalkOptions {
  signal?: AbortSignal;
}

/** Every difference between the trees at `oldRoot` and `newRoot`, sorted by path. */
export async function walkDiff(oldRoot: string, newRoot: string, options: WalkOptions = {}): Promise<DiffEntry[]> {
  const pacer = new Pacer(options.signal);
  const oldTree = new Tree(oldRoot);
  const newTree = new Tree(newRoot);
  const out = new DiffCollector(oldTree, newTree, pacer, options.signal);
  const root = Buffer.alloc(0);
  const oldRootSt = oldTree.entry(root);
  const newRootSt = newTree.entry(root);
  if (oldRootSt && newRootSt) await out.compare(root, oldRootSt, newRootSt, ALL);
  await walkBelow(out, root, pacer);
  return out.finish();
}

/**
 * Every difference below `dir`, a directory in both trees (not `dir` itself), sorted by
 * path: the send path's answer for a directory that replaced another one by a rename,
 * whose entries the stream does not name.
 */
export async function walkSubtree(oldTree: Tree, newTree: Tree, dir: Buffer, pacer: Pacer, signal?: AbortSignal): Promise<DiffEntry[]> {
  const out = new DiffCollector(oldTree, newTree, pacer, signal);
  await walkBelow(out, dir, pacer);
  return out.finish();
}

const ALL = { content: true, xattrs: true };

/** The merge walk of both trees below `top`, a directory in both. */
async function walkBelow(out: DiffCollector, top: Buffer, pacer: Pacer): Promise<void> {
  const { oldTree, newTree } = out;
  const stack: Buffer[] = [top];
  for (let dir = stack.pop(); dir !== undefined; dir = stack.pop()) {
    const newNames = new Map(newTree.names(dir).map((n) => [n.toString('latin1'), n]));
    for (const name of oldTree.names(dir)) {
      const rel = joinRel(dir, name);
      const a = oldTree.lstatChild(rel);
      const b = newNames.delete(name.toString('latin1')) ? newTree.lstatChild(rel) : null;
      const w = pacer.tick();
      if (w) await w;
      if (a && b) {
        await out.compare(rel, a, b, ALL);
        if (a.isDirectory() && b.isDirectory()) stack.push(rel);
      } else if (a) await out.addTree(rel, a, 'old');
      else if (b) await out.addTree(rel, b, 'new');
    }
    for (const name of newNames.values()) {
      const rel = joinRel(dir, name);
      const b = newTree.lstatChild(rel);
      const w = pacer.tick();
      if (w) await w;
      if (b) await out.addTree(rel, b, 'new');
    }
  }
}
