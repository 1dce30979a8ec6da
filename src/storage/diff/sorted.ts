/**
 * The send path's verification (the rules are verify.ts'): turns the replay's candidates
 * into diff entries, yielded in order (bytewise by path) as they are decided, so a caller
 * can write the first line before the last path is checked.
 *
 * What each candidate costs is only what it must:
 * - a pure removal by unlink or rmdir (or a new name the stream linked to an inode it
 *   created): nothing, the stream alone decides it (`Candidate.sure`); an inode the stream
 *   created that a rename put into an old directory: an lstat of the old tree only (the
 *   new side's inodes are cold in a snapshot taken a moment ago);
 * - a large tree the stream created (`listNew`): its subtree in the new tree is read and
 *   emitted as it is reached, one sorted directory listing at a time, with an lstat of
 *   directories only (for the device boundary), when nothing was there in the old tree
 *   (a directory there: both subtrees are walked, as below; anything else: modified, and
 *   the new subtree listed); what it holds was never a candidate;
 * - other added or deleted paths: two lstats, plus a listing of an added or deleted
 *   directory only when the stream did not name what it holds: a directory the stream
 *   removed (rmdir, which it emits only once the directory is empty) has every entry as a
 *   candidate of its own (`emptiedDir`) unless the replay let go of them (a large removed
 *   tree), so only such a tree and a directory that arrived or left by a rename is listed;
 * - an inode that stayed at its path (no new name, no new inode): its type, mode and owner
 *   from lstat; its xattrs from the stream alone — send emits set_xattr/remove_xattr only
 *   for names whose value differs from the parent's (a set-then-removed xattr sends
 *   nothing) —; its bytes only where the stream says its extents changed (update_extent,
 *   write, clone; a truncate means the whole file): the rest still shares the old tree's
 *   extents, so it is equal without being read. Most of these byte comparisons were
 *   already made while the stream was arriving (EarlyChecks), overlapping the kernel's
 *   send;
 * - a new inode or a new name where the old tree had an entry too (dpkg's rename over a
 *   file): everything compared, its xattrs by getfattr in background batches.
 * - a directory that a rename put where another directory was (or that a rename took
 *   away from under a new one): the stream names neither side's entries that moved with
 *   them, so both subtrees are walked (walk.ts) and that walk decides every path below.
 *
 * The I/O is synchronous on purpose: on this kind of machine sync lstat/open/read are
 * several times faster than fs.promises (research/machine.md §4), and the parallelism
 * that pays is the kernel producing the stream while Node checks what it has seen.
 *
 * Memory: the candidates (one small record per changed path that is not inside a new
 * directory) and one sorted listing per directory on the way down a listed subtree,
 * never the rendered output.
 */
import type { Stats } from 'node:fs';
import type { ChangeKind, DiffEntry } from '../../core/diff.js';
import { mergeRanges, type Candidate } from './replay.js';
import {
  NeedsWalkError,
  Pacer,
  Tree,
  contentsDiffer,
  contentsDifferSync,
  entryPath,
  readXattrs,
  spanBytes,
  spansToCompare,
  symlinkTargetsDiffer,
  type VerifyOptions,
} from './verify.js';
import { walkSubtree } from './walk.js';

const key = (rel: Buffer): string => rel.toString('latin1');
const SLASH = Buffer.of(0x2f);
const startsWith = (path: Buffer, prefix: Buffer): boolean => path.length > prefix.length && path.compare(prefix, 0, prefix.length, 0, prefix.length) === 0;
const TYPE_MASK = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;
const S_IFBLK = 0o060000;

/**
 * What verification needs of an lstat, kept instead of the Stats object: thousands of
 * candidates hold theirs from the lookup until their turn, and a Stats (with its four
 * Dates) that lives that long costs more in garbage collection than the lstat itself.
 */
export interface Meta {
  mode: number;
  uid: number;
  gid: number;
  rdev: number;
  size: number;
  nlink: number;
  ino: number;
}

const meta = (st: Stats | null): Meta | null =>
  st && { mode: st.mode, uid: st.uid, gid: st.gid, rdev: st.rdev, size: st.size, nlink: st.nlink, ino: st.ino };
const typeOf = (m: Meta): number => m.mode & TYPE_MASK;

/** statsDiffer (verify.ts) on Meta. */
function metaDiffer(a: Meta, b: Meta): boolean {
  if (typeOf(a) !== typeOf(b)) return true;
  if ((a.mode & 0o7777) !== (b.mode & 0o7777)) return true;
  if (a.uid !== b.uid || a.gid !== b.gid) return true;
  return (typeOf(a) === S_IFCHR || typeOf(a) === S_IFBLK) && a.rdev !== b.rdev;
}
/** Early byte comparisons stay small: they run between chunks of the stream. */
const EARLY_MAX_BYTES = 1024 * 1024;
/** Pairs per getfattr run; a run starts when full or when the output waits for it. */
const XATTR_BATCH = 4096;

interface Early {
  a: Meta | null;
  b: Meta | null;
  ranges: readonly number[] | null;
  /** Whether the bytes in `ranges` differ; undefined when not compared. */
  differs: boolean | undefined;
}

const sameRanges = (x: readonly number[] | null, y: readonly number[] | null): boolean =>
  x === null || y === null ? x === y : x.length === y.length && x.every((v, i) => v === y[i]);

/**
 * Checks made while the send stream is still arriving: lstat of both sides and the byte
 * comparison of the changed ranges of an inode the stream has finished with. Both trees
 * are read-only, so an answer made early is the answer; verification uses it only when
 * the candidate's final ranges are the ones checked.
 */
export class EarlyChecks {
  private queue: Array<{ rel: Buffer; ranges: readonly number[] | null }> = [];
  private readonly done = new Map<string, Early>();

  constructor(
    readonly oldTree: Tree,
    readonly newTree: Tree,
  ) {}

  /** The replay's InPlaceContentHook. */
  readonly enqueue = (rel: Buffer, ranges: readonly number[] | null): void => {
    this.queue.push({ rel: Buffer.from(rel), ranges: ranges && [...ranges] });
  };

  /** Runs what is queued. */
  run(): void {
    const queue = this.queue;
    this.queue = [];
    for (const { rel, ranges } of queue) {
      try {
        const a = meta(this.oldTree.entry(rel));
        const b = meta(this.newTree.entry(rel));
        let differs: boolean | undefined;
        if (a && b && typeOf(a) === S_IFREG && a.size === b.size && !metaDiffer(a, b)) {
          const spans = spansToCompare(a.size, ranges);
          if (spanBytes(spans) <= EARLY_MAX_BYTES) differs = contentsDifferSync(this.oldTree.abs(rel), this.newTree.abs(rel), spans);
        }
        this.done.set(key(rel), { a, b, ranges, differs });
      } catch {
        // Deliberately deferred, whatever it was: verification repeats this check at the
        // end and reports its error there, where errors of the trees belong.
      }
    }
  }

  /** The early result for `rel`, kept for `take`. */
  peek(rel: Buffer): Early | undefined {
    return this.done.size === 0 ? undefined : this.done.get(key(rel));
  }

  /** The early result for `rel`, let go. */
  take(rel: Buffer): Early | undefined {
    if (this.done.size === 0) return undefined;
    const k = key(rel);
    const e = this.done.get(k);
    this.done.delete(k);
    return e;
  }
}

/**
 * Both sides' lstat of a candidate's path. Taken when the candidate's turn comes, so a
 * million candidates do not hold two records each meanwhile; only a changed inode that
 * may have several names is looked up in advance (to find its other names).
 */
interface Looked {
  a: Meta | null;
  b: Meta | null;
}

/** Whether a candidate's inode may have names the stream did not give (hard links). */
const mayHaveOtherNames = (c: Candidate): boolean => (c.content || c.attrs || c.xattrs) && !c.newInode;

function merged(x: Candidate, y: Candidate): Candidate {
  return {
    path: x.path,
    maybeAdded: x.maybeAdded || y.maybeAdded,
    maybeDeleted: x.maybeDeleted || y.maybeDeleted,
    content: x.content || y.content,
    attrs: x.attrs || y.attrs,
    xattrs: x.xattrs || y.xattrs,
    newInode: x.newInode || y.newInode,
    listNew: x.listNew || y.listNew,
    emptiedDir: x.emptiedDir || y.emptiedDir,
    ranges: mergeRanges(x.ranges === null ? null : [...x.ranges], y.ranges),
    sure: false,
  };
}

export interface SortedVerifyOptions extends VerifyOptions {
  early?: EarlyChecks;
}

/**
 * Finds the other names of changed inodes with several hard links (NeedsWalkError when it
 * cannot: the caller walks instead), then returns the entries, sorted, as an async
 * iterator that looks up and decides them one by one. All stream-side failures happen
 * before this returns; the iterator fails only on errors of the trees themselves (or an
 * abort). `candidates`: one per path, as the replay gives them; the array is taken over
 * (sorted in place, and let go of as the entries are decided).
 */
export async function verifySorted(
  candidates: Candidate[],
  oldTree: Tree,
  newTree: Tree,
  options: SortedVerifyOptions = {},
): Promise<AsyncGenerator<DiffEntry, void, undefined>> {
  const pacer = new Pacer(options.signal);
  const early = options.early;
  const looked = new Map<Candidate, Looked>();
  const lookedUp = (c: Candidate): Looked => {
    let l = looked.get(c);
    if (l === undefined) looked.set(c, (l = c.known ?? lookUp(c.path, oldTree, newTree, early)));
    return l;
  };
  /** Further names of hard-linked inodes, merged into the candidates at the end. */
  const extra = new Map<string, Candidate>();
  const resolvedInodes = new Set<number>();
  // The stream names a changed inode by one of its paths only; its other hard links
  // changed too. Find them unless the inode is new (then all its names are in the stream).
  const resolve = async (c: Candidate): Promise<void> => {
    const { b } = lookedUp(c);
    if (b === null || typeOf(b) === S_IFDIR || b.nlink <= 1 || resolvedInodes.has(b.ino)) return;
    resolvedInodes.add(b.ino);
    if (!options.inodePaths) throw new NeedsWalkError(`a changed inode has ${b.nlink} hard links and no resolver was given`);
    let names: Buffer[];
    try {
      names = await options.inodePaths(newTree.root.toString(), b.ino, options.signal ? { signal: options.signal } : {});
    } catch (err) {
      if (options.signal?.aborted) throw err;
      throw new NeedsWalkError(`cannot resolve the names of inode ${b.ino}`, { cause: err });
    }
    const found = new Map<string, Buffer>();
    for (const p of names) {
      if (newTree.entry(p)?.ino === b.ino) found.set(key(p), p);
    }
    if (found.size !== b.nlink) throw new NeedsWalkError(`resolved ${found.size} of the ${b.nlink} names of inode ${b.ino}`);
    for (const [k, p] of found) {
      if (p.equals(c.path)) continue;
      const more: Candidate = { ...c, path: p, maybeAdded: false, maybeDeleted: false, sure: false };
      // What is known of the first name's two sides is not known of this one.
      delete more.known;
      delete more.replacedXattrs;
      const known = extra.get(k);
      extra.set(k, known ? merged(known, more) : more);
      if (mayHaveOtherNames(more)) await resolve(more);
    }
  };
  for (let i = 0; i < candidates.length; i++) {
    const w = pacer.tick();
    if (w) await w;
    const c = candidates[i] as Candidate;
    if (mayHaveOtherNames(c)) await resolve(c);
  }
  if (extra.size > 0) {
    // A further name that is a candidate already: one candidate with the flags of both.
    for (let i = 0; i < candidates.length; i++) {
      const c = candidates[i] as Candidate;
      const k = key(c.path);
      const more = extra.get(k);
      if (more === undefined) continue;
      extra.delete(k);
      candidates[i] = merged(c, more);
    }
    candidates.push(...extra.values());
  }
  candidates.sort((x, y) => Buffer.compare(x.path, y.path));
  return emitSorted(candidates, looked, oldTree, newTree, pacer, early, options.signal);
}

/** Both sides' lstat of `rel` (from the early checks when they made it). */
function lookUp(rel: Buffer, oldTree: Tree, newTree: Tree, early: EarlyChecks | Early | undefined): Looked {
  const e = early instanceof EarlyChecks ? early.peek(rel) : early;
  return e ? { a: e.a, b: e.b } : { a: meta(oldTree.entry(rel)), b: meta(newTree.entry(rel)) };
}

/**
 * Entries below a directory, sorted, emitted as they are reached: a subtree that exists on
 * one side only (read as it is emitted), or the walk of a directory that replaced another.
 */
class Run {
  /** The next entry; undefined once the run is done. */
  rel: Buffer | undefined;
  kind: ChangeKind = 'added';

  constructor(private readonly source: Iterator<readonly [Buffer, ChangeKind]>) {
    this.advance();
  }

  advance(): void {
    const r = this.source.next();
    if (r.done === true) this.rel = undefined;
    else [this.rel, this.kind] = r.value;
  }
}

function* listed(tree: Tree, rel: Buffer, kind: ChangeKind): Generator<readonly [Buffer, ChangeKind]> {
  for (const child of tree.sortedBelow(rel)) yield [child, kind];
}

/** Listed entries produced between two looks at the output (and the pacer). */
const DRAIN_STEP = 1024;

interface XattrBatch {
  rels: Buffer[];
  slots: Slot[];
  started: Promise<void> | undefined;
  error: { err: unknown } | undefined;
}

interface Slot {
  rel: Buffer;
  kind: ChangeKind;
  /** Set while the entry waits for its xattr comparison. */
  batch: XattrBatch | undefined;
  drop: boolean;
}

async function* emitSorted(
  items: Candidate[],
  looked: Map<Candidate, Looked>,
  oldTree: Tree,
  newTree: Tree,
  pacer: Pacer,
  earlyChecks: EarlyChecks | undefined,
  signal: AbortSignal | undefined,
): AsyncGenerator<DiffEntry, void, undefined> {
  let runs: Run[] = [];
  let slots: Slot[] = [];
  let head = 0;
  let batch: XattrBatch | undefined;
  let last: Buffer | undefined;
  /** `dir/` of each directory whose subtree was walked: candidates below it are decided. */
  const walked: Buffer[] = [];

  const produce = (rel: Buffer, kind: ChangeKind, pending?: XattrBatch): void => {
    if (last !== undefined && last.equals(rel)) return;
    last = rel;
    const slot: Slot = { rel, kind, batch: pending, drop: false };
    slots.push(slot);
    pending?.slots.push(slot);
  };
  /**
   * Produces the listed entries that sort before `upTo` (all of them without it), at most
   * DRAIN_STEP of them: true when it stopped there, with more to produce.
   */
  const drainRuns = (upTo: Buffer | undefined): boolean => {
    let budget = DRAIN_STEP;
    let more = false;
    for (;;) {
      let best: Run | undefined;
      for (const r of runs) {
        if (r.rel !== undefined && (best === undefined || Buffer.compare(r.rel, best.rel as Buffer) < 0)) best = r;
      }
      if (best === undefined) break;
      const rel = best.rel as Buffer;
      if (upTo !== undefined && Buffer.compare(rel, upTo) >= 0) break;
      if (budget-- === 0) {
        more = true;
        break;
      }
      produce(rel, best.kind);
      best.advance();
    }
    if (runs.some((r) => r.rel === undefined)) runs = runs.filter((r) => r.rel !== undefined);
    return more;
  };
  const startBatch = (x: XattrBatch): Promise<void> => {
    if (x === batch) batch = undefined;
    x.started ??= readXattrs([...x.rels.map((r) => oldTree.abs(r)), ...x.rels.map((r) => newTree.abs(r))], signal ? { signal } : {}).then(
      (values) => {
        x.slots.forEach((slot, i) => {
          slot.drop = values[i] === values[i + x.rels.length];
          slot.batch = undefined;
        });
      },
      // Kept, not thrown here: rethrown when the output reaches this batch.
      (err: unknown) => {
        x.error = { err };
      },
    );
    return x.started;
  };
  const pendingXattrs = (rel: Buffer): void => {
    batch ??= { rels: [], slots: [], started: undefined, error: undefined };
    const b = batch;
    b.rels.push(rel);
    produce(rel, 'modified', b);
    if (b.rels.length >= XATTR_BATCH) void startBatch(b);
  };

  const listInto = (tree: Tree, rel: Buffer, kind: ChangeKind): void => {
    runs.push(new Run(listed(tree, rel, kind)));
  };
  /**
   * Decides one candidate. Synchronous unless it must wait (a listing, a walk, a byte
   * comparison): then it returns the promise to await, and nothing otherwise, so most
   * candidates cost no promise.
   */
  const decide = (c: Candidate, early: Early | undefined): Promise<void> | undefined => {
    if (c.sure) {
      if (looked.size > 0) looked.delete(c);
      produce(c.path, c.maybeAdded ? 'added' : 'deleted');
      if (c.maybeAdded && c.listNew) listInto(newTree, c.path, 'added');
      return undefined;
    }
    /** The stream named every entry below this path in the new tree. */
    const namedNew = c.newInode && !c.listNew;
    let l = looked.get(c);
    if (l !== undefined) looked.delete(c);
    else if (c.newInode && c.maybeAdded && early === undefined) {
      // An inode the stream created ended here: with nothing here in the old tree (a rename
      // into an old directory may have replaced an entry), it is added, without a look at
      // the new tree, whose inodes are cold in a snapshot taken a moment ago.
      const a = meta(oldTree.entry(c.path));
      if (a === null) {
        produce(c.path, 'added');
        if (c.listNew) listInto(newTree, c.path, 'added');
        return undefined;
      }
      l = { a, b: meta(newTree.entry(c.path)) };
    } else l = c.known ?? lookUp(c.path, oldTree, newTree, early);
    const { a, b } = l;
    const rel = c.path;
    if (a === null && b === null) return undefined;
    if (a === null || b === null) {
      const m = (a ?? b) as Meta;
      const kind: ChangeKind = a === null ? 'added' : 'deleted';
      produce(rel, kind);
      if (typeOf(m) === S_IFDIR && !(a === null ? namedNew : c.emptiedDir)) listInto(a === null ? newTree : oldTree, rel, kind);
      return undefined;
    }
    const identity = c.maybeAdded || c.maybeDeleted;
    if (typeOf(a) !== typeOf(b)) {
      produce(rel, 'modified');
      if (typeOf(a) === S_IFDIR && !c.emptiedDir) listInto(oldTree, rel, 'deleted');
      if (typeOf(b) === S_IFDIR && !namedNew) listInto(newTree, rel, 'added');
      return undefined;
    }
    if (typeOf(a) === S_IFDIR && identity && !(c.emptiedDir && namedNew)) {
      // A directory that replaced another by a rename (or was replaced by a new one over a
      // directory that left by a rename): the stream names the entries of neither side
      // that moved with them, so the two subtrees are walked, and that walk is the answer
      // for every path below this one.
      return (async () => {
        const below = await walkSubtree(oldTree, newTree, rel, pacer, signal);
        runs.push(new Run(below.map((e) => [e.path.subarray(1), e.kind] as const)[Symbol.iterator]()));
        walked.push(Buffer.concat([rel, SLASH]));
        sameType(c, a, b, identity);
      })();
    }
    if (typeOf(a) === S_IFREG && (identity || c.content) && a.size === b.size && !metaDiffer(a, b)) {
      const ranges = identity ? null : c.ranges;
      if (identity || early?.differs === undefined || !sameRanges(early.ranges, ranges)) {
        return contentsDiffer(oldTree.abs(rel), newTree.abs(rel), a.size, pacer, spansToCompare(a.size, ranges)).then((differs) =>
          differs ? produce(rel, 'modified') : sameType(c, a, b, identity, false),
        );
      }
      sameType(c, a, b, identity, early.differs);
      return undefined;
    }
    sameType(c, a, b, identity);
    return undefined;
  };
  /**
   * An entry of the same type on both sides: `differs` is the byte comparison's answer
   * when one was made (regular files of equal size, mode and owner only).
   */
  const sameType = (c: Candidate, a: Meta, b: Meta, identity: boolean, differs?: boolean): void => {
    const rel = c.path;
    if (metaDiffer(a, b)) return produce(rel, 'modified');
    if (typeOf(a) === S_IFLNK) {
      if (symlinkTargetsDiffer(oldTree.abs(rel), newTree.abs(rel))) return produce(rel, 'modified');
    } else if (typeOf(a) === S_IFREG && (identity || c.content)) {
      if (a.size !== b.size || differs === true) return produce(rel, 'modified');
    }
    if (identity) {
      if (c.replacedXattrs === undefined) pendingXattrs(rel);
      else if (c.replacedXattrs === 'differ') produce(rel, 'modified');
    } else if (c.xattrs) produce(rel, 'modified');
  };

  /**
   * The next decided entry to emit, a promise to await first (an xattr batch to finish), or
   * undefined when nothing more is ready. An entry waiting for xattrs holds back those
   * after it until its batch is full or enough output queues up behind it (or, at the
   * `end`, at once). Synchronous, and no generator per call: it runs once per candidate.
   */
  const nextReady = (end: boolean): DiffEntry | Promise<void> | undefined => {
    while (head < slots.length) {
      const slot = slots[head] as Slot;
      if (slot.batch) {
        if (!end && slot.batch.started === undefined && slots.length - head < XATTR_BATCH) return undefined;
        const x = slot.batch;
        return startBatch(x).then(() => {
          if (x.error) throw x.error.err;
        });
      }
      head++;
      if (!slot.drop) return { path: entryPath(slot.rel), kind: slot.kind };
    }
    if (head > 4096) {
      slots = [];
      head = 0;
    }
    return undefined;
  };

  for (let i = 0; i <= items.length; i++) {
    const c = items[i];
    if (c !== undefined) {
      // Decided candidates are let go: the output is never held, and neither is the input behind it.
      (items as Array<Candidate | undefined>)[i] = undefined;
      const w = pacer.tick();
      if (w) await w;
      if (walked.length > 0 && walked.some((prefix) => startsWith(c.path, prefix))) {
        looked.delete(c);
        continue;
      }
    }
    // Listed entries before this candidate (all of them after the last), a step at a time:
    // a listing of a million is never held.
    while (runs.length > 0 && drainRuns(c?.path)) {
      for (let r = nextReady(false); r !== undefined; r = nextReady(false)) {
        if (r instanceof Promise) await r;
        else yield r;
      }
      const w = pacer.tick(DRAIN_STEP);
      if (w) await w;
    }
    if (c !== undefined) {
      const deciding = decide(c, earlyChecks?.take(c.path));
      if (deciding) await deciding;
    }
    const end = c === undefined;
    for (let r = nextReady(end); r !== undefined; r = nextReady(end)) {
      if (r instanceof Promise) await r;
      else yield r;
    }
  }
}

/** Collects verifySorted's entries (for callers that want the whole list); `candidates` stays as it is. */
export async function verifyCandidates(
  candidates: Candidate[],
  oldRoot: string,
  newRoot: string,
  options: SortedVerifyOptions = {},
): Promise<DiffEntry[]> {
  const out: DiffEntry[] = [];
  for await (const e of await verifySorted([...candidates], new Tree(oldRoot), new Tree(newRoot), options)) out.push(e);
  return out;
}
