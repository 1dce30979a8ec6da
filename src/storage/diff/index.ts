/**
 * The tree diff: what changed between an old tree (a read-only snapshot) and a new tree
 * (a temporary read-only snapshot of the live root), by the rules of SPEC §6.
 *
 * Fastest path, when the new tree descends from the old one (tree.ts): read the items of
 * the tree blocks written since the old tree was made, and compare the inodes they name
 * with the old tree's; the candidate paths are verified as the send's are. Anything it
 * cannot do (unrelated trees, an older addon, too much to read) falls back to the send.
 *
 * Fast path (snapper's method, research/anchors.md §3, §9): parse the data-less send
 * stream from old to new, replay it into candidate paths, verify each against both
 * trees. Its cost grows with the changes, not the tree. Any failure of the stream (the
 * program failed, garbage, truncation, a stream we cannot replay, hard links we cannot
 * resolve) falls back to the full walk, which gives the same answer in O(tree). An abort
 * is never turned into a fallback.
 */
import type { Readable } from 'node:stream';
import type { DiffEntry } from '../../core/diff.js';
import { SendStreamParser, checksumsChecked } from '../sendstream.js';
import { SendReplay, type Candidate, type ReplayLimits } from './replay.js';
import { EarlyChecks, verifySorted } from './sorted.js';
import { treeCandidates, type TreeCompareOptions, type TreeReader } from './tree.js';
import { NeedsWalkError, Tree, type InodePathResolver } from './verify.js';
import { walkDiff } from './walk.js';

export type { InodePathResolver } from './verify.js';

/** How a diff found its candidates: the trees' own items, the send stream, or a walk of both trees. */
export type DiffMethod = 'tree' | 'send' | 'walk';
export { walkDiff } from './walk.js';

export interface DiffTreesOptions {
  /** The old tree: a read-only snapshot. */
  oldRoot: string;
  /** The new tree: a read-only snapshot (a temporary one of a live root). */
  newRoot: string;
  /** The tree searches of the tree comparison (tried before the send; tree.ts). */
  treeReader?: TreeReader;
  /** Options of the tree comparison (tests set a small budget). */
  treeOptions?: TreeCompareOptions;
  /**
   * Starts `btrfs send --no-data -p oldRoot newRoot` (or equivalent) and returns its
   * stdout. The stream must error if the sender fails. Without it, the walk is used.
   */
  sendStream?: () => Readable;
  /**
   * Lists every name of an inode in `newRoot` (btrfs: `inspect-internal inode-resolve`).
   * Needed only when a changed file has several hard links; without it that case walks.
   */
  inodePaths?: InodePathResolver;
  signal?: AbortSignal;
  /** Told why the fast path was abandoned, before the walk starts (for logs). */
  onFallback?: (reason: unknown) => void;
  /** Where the replay lists whole new or removed trees instead (tests set them low). */
  replayLimits?: ReplayLimits;
}

export interface DiffTreesResult {
  /** Sorted bytewise by path. */
  entries: DiffEntry[];
  method: DiffMethod;
}

export interface DiffTreesStream {
  method: DiffMethod;
  /**
   * The entries, sorted bytewise by path, decided one by one as they are read. Iterate it
   * once, to the end or until an error (an error of the trees, or the abort).
   */
  entries: AsyncIterable<DiffEntry>;
}

/** The diff between `oldRoot` and `newRoot`; see the module comment. */
export async function diffTrees(opts: DiffTreesOptions): Promise<DiffTreesResult> {
  const { method, entries } = await openDiff(opts);
  const out: DiffEntry[] = [];
  for await (const e of entries) out.push(e);
  return { entries: out, method };
}

/**
 * The same diff as an incremental stream: the stream is read and replayed and the
 * candidates looked up before this resolves (so a fallback to the walk is decided before
 * the first entry), then each entry is verified when the iterator reaches it.
 */
export async function openDiff(opts: DiffTreesOptions): Promise<DiffTreesStream> {
  const { signal } = opts;
  signal?.throwIfAborted();
  if (opts.treeReader) {
    let found: ReturnType<typeof treeCandidates> | undefined;
    try {
      found = treeCandidates(opts.oldRoot, opts.newRoot, opts.treeReader, opts.treeOptions);
    } catch (err) {
      // Whatever stopped it (unrelated trees, the budget, an ioctl refused), the send can
      // still do it, and fails the same way if the trees themselves are at fault.
      opts.onFallback?.(err);
    }
    if (found) {
      const entries = await verifySorted(found.candidates, new Tree(opts.oldRoot), new Tree(opts.newRoot), {
        inodePaths: found.inodePaths,
        ...(signal ? { signal } : {}),
      }).catch((err: unknown) => {
        if (signal?.aborted) throw signal.reason;
        if (!(err instanceof NeedsWalkError)) throw err;
        opts.onFallback?.(err);
        return undefined;
      });
      if (entries) return { entries, method: 'tree' };
    }
  }
  if (opts.sendStream) {
    try {
      const oldTree = new Tree(opts.oldRoot);
      const newTree = new Tree(opts.newRoot);
      const early = new EarlyChecks(oldTree, newTree);
      const candidates = await replayStream(opts.sendStream, signal, early, opts.replayLimits);
      const entries = await verifySorted(candidates, oldTree, newTree, {
        early,
        ...(signal ? { signal } : {}),
        ...(opts.inodePaths ? { inodePaths: opts.inodePaths } : {}),
      });
      return { entries, method: 'send' };
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      if (!isFallbackReason(err)) throw err;
      opts.onFallback?.(err);
    }
  }
  const walked = await walkDiff(opts.oldRoot, opts.newRoot, { signal });
  return { entries: (async function* () { yield* walked; })(), method: 'walk' };
}

/**
 * Errors of the verification itself (I/O errors in the trees, a missing getfattr) would
 * fail the walk the same way, so only stream-side failures fall back. The stream side
 * is everything before verification plus NeedsWalkError.
 */
function isFallbackReason(err: unknown): boolean {
  return err instanceof StreamSideError || err instanceof NeedsWalkError;
}

class StreamSideError extends Error {
  constructor(cause: unknown) {
    super(`send stream failed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'StreamSideError';
  }
}

/** Reads, parses and replays the whole stream; every failure is a StreamSideError. */
async function replayStream(open: () => Readable, signal: AbortSignal | undefined, early: EarlyChecks, limits?: ReplayLimits): Promise<Candidate[]> {
  let stream: Readable | undefined;
  const onAbort = (): void => {
    stream?.destroy(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    stream = open();
    // The in-process send checked each command's checksum as it read the pipe.
    const parser = new SendStreamParser({ skip: ['utimes'], verifyCrc: !checksumsChecked(stream) });
    const replay = new SendReplay(early.enqueue, limits);
    for await (const chunk of stream as AsyncIterable<Buffer | string>) {
      if (typeof chunk === 'string') throw new Error('the send stream yields text, not bytes');
      for (const command of parser.push(chunk)) replay.apply(command);
      // While the kernel produces the next chunk, compare what the stream is done with.
      early.run();
    }
    parser.finish();
    const candidates = replay.finish();
    early.run();
    return candidates;
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    throw new StreamSideError(err);
  } finally {
    signal?.removeEventListener('abort', onAbort);
    stream?.destroy();
  }
}
