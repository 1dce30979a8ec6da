/**
 * Decides what really changed at each candidate path by looking at both trees, and the
 * comparison rules the full walk (walk.ts) shares, so both paths give the same answers.
 *
 * The rules (SPEC §6):
 * - a path is looked up without following symlinks, in any component, and never across
 *   a device boundary: an entry whose st_dev differs from its tree root's (a mount, a
 *   nested subvolume, or the empty placeholder a btrfs snapshot shows for a nested
 *   subvolume, which has a st_dev of its own) is treated as absent, with all below it;
 * - only in the new tree → added; only in the old tree → deleted; every path inside an
 *   added or deleted directory is listed too (also when a type change turned a directory
 *   into something else or the reverse);
 * - in both → modified iff the type, the permission bits (07777), uid, gid, the symlink
 *   target, the device number, the xattrs (names and values) or a regular file's content
 *   differ. Timestamps and the link count never count, and a directory is never modified
 *   because of its entries.
 */
import { closeSync, constants as fsc, lstatSync, openSync, readSync, readdirSync, readlinkSync, type Stats } from 'node:fs';
import { isUtf8 } from 'node:buffer';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { compareDiffEntries, type ChangeKind, type DiffEntry } from '../../core/diff.js';
import { isErrno } from '../../system/fs.js';
import { run } from '../../system/run.js';

const SLASH = Buffer.of(0x2f);
const key = (rel: Buffer): string => rel.toString('latin1');

export function joinRel(dir: Buffer, name: Buffer): Buffer {
  if (dir.length === 0) return name;
  // Not Buffer.concat: its generic loop was a tenth of a 2,000-path diff's own time.
  const out = Buffer.allocUnsafe(dir.length + 1 + name.length);
  out.set(dir, 0);
  out[dir.length] = 0x2f;
  out.set(name, dir.length + 1);
  return out;
}

function parentRel(rel: Buffer): Buffer {
  const i = rel.lastIndexOf(0x2f);
  return i < 0 ? Buffer.alloc(0) : rel.subarray(0, i);
}

/** A relative path as a DiffEntry path: absolute inside the root. */
export function entryPath(rel: Buffer): Buffer {
  const out = Buffer.allocUnsafe(rel.length + 1);
  out[0] = 0x2f;
  out.set(rel, 1);
  return out;
}

/** Yields to the event loop every so often and honours the abort signal. */
export class Pacer {
  private count = 0;
  constructor(
    private readonly signal: AbortSignal | undefined,
    private readonly every = 1000,
  ) {
    signal?.throwIfAborted();
  }

  /**
   * Counts `weight` units of work; every `every` units, a promise that yields to the event
   * loop (and then throws if aborted). Nothing otherwise, so that a hot loop that writes
   * `const w = pacer.tick(); if (w) await w;` costs no promise per step.
   */
  tick(weight = 1): Promise<void> | undefined {
    this.count += weight;
    if (this.count < this.every) return undefined;
    this.count = 0;
    return this.pause();
  }

  private async pause(): Promise<void> {
    await yieldToLoop();
    this.signal?.throwIfAborted();
  }
}

/** One side of a diff: a root directory and the device its entries must be on. */
export class Tree {
  readonly root: Buffer;
  readonly dev: number;
  /** Relative directory → whether it can be descended (a real directory on `dev`). */
  private readonly dirs = new Map<string, boolean>();
  private lastDir: Buffer | null = null;
  private lastDirOk = false;

  constructor(root: string) {
    this.root = Buffer.from(root.length > 1 ? root.replace(/\/+$/, '') : root);
    const st = lstatSync(this.root);
    if (!st.isDirectory()) throw new Error(`${root} is not a directory`);
    this.dev = st.dev;
    this.dirs.set('', true);
  }

  abs(rel: Buffer): Buffer {
    return rel.length === 0 ? this.root : joinRel(this.root, rel);
  }

  /** lstat of `rel` in this tree, or null when it is absent or excluded (see the module comment). */
  entry(rel: Buffer): Stats | null {
    if (rel.length === 0) return lstatSync(this.root);
    // Paths come sorted, so the last parent asked about is usually the next one's too.
    const dir = parentRel(rel);
    if (this.lastDir === null || !dir.equals(this.lastDir)) {
      this.lastDirOk = this.traversable(dir);
      this.lastDir = dir;
    }
    if (!this.lastDirOk) return null;
    return this.lstatChild(rel);
  }

  /** lstat of an entry whose parent is known to be traversable. */
  lstatChild(rel: Buffer): Stats | null {
    let st: Stats | undefined;
    try {
      st = lstatSync(this.abs(rel), { throwIfNoEntry: false });
    } catch (err) {
      if (isErrno(err, 'ENOTDIR')) return null;
      throw err;
    }
    return st !== undefined && st.dev === this.dev ? st : null;
  }

  private traversable(rel: Buffer): boolean {
    const k = key(rel);
    const known = this.dirs.get(k);
    if (known !== undefined) return known;
    const ok = this.traversable(parentRel(rel)) && (this.lstatChild(rel)?.isDirectory() ?? false);
    this.dirs.set(k, ok);
    return ok;
  }

  /** The names in directory `rel` (which must be traversable), as raw bytes. */
  names(rel: Buffer): Buffer[] {
    return readdirSync(this.abs(rel), { encoding: 'buffer' });
  }

  /**
   * Every entry below directory `rel` (which must be traversable), in path order (bytewise),
   * read as it is iterated: what it holds meanwhile is one sorted listing per directory on
   * the way down. Only directories are lstat'ed (for the device boundary): the type of
   * anything else comes with its name.
   */
  *sortedBelow(rel: Buffer): Generator<Buffer, void, undefined> {
    const frames = [this.listing(rel)];
    while (frames.length > 0) {
      const f = frames[frames.length - 1] as Listing;
      const item = f.items[f.i++];
      if (item === undefined) {
        frames.pop();
        continue;
      }
      const child = joinRel(f.dir, item.name);
      if (item.below) frames.push(this.listing(child));
      else yield child;
    }
  }

  /**
   * Directory `dir`'s entries, each in the order of its own path and (for a directory on
   * this device) of the paths below it: `name/` sorts where everything below the directory
   * does, so a subtree is one stretch of the order.
   */
  private listing(dir: Buffer): Listing {
    const items: ListingItem[] = [];
    for (const d of readdirSync(this.abs(dir), { withFileTypes: true, encoding: 'buffer' })) {
      const name = d.name as unknown as Buffer;
      const known = d.isFile() || d.isSymbolicLink() || d.isFIFO() || d.isSocket() || d.isCharacterDevice() || d.isBlockDevice();
      if (known) {
        items.push({ name, key: name, below: false });
        continue;
      }
      const st = this.lstatChild(joinRel(dir, name));
      if (st === null) continue;
      items.push({ name, key: name, below: false });
      if (st.isDirectory()) items.push({ name, key: Buffer.concat([name, SLASH]), below: true });
    }
    items.sort((x, y) => Buffer.compare(x.key, y.key));
    return { dir, items, i: 0 };
  }

  /** Calls `visit` for every entry below directory `rel`, parents first, without crossing devices. */
  async eachBelow(rel: Buffer, pacer: Pacer, visit: (rel: Buffer, st: Stats) => void): Promise<void> {
    const stack = [rel];
    for (let dir = stack.pop(); dir !== undefined; dir = stack.pop()) {
      for (const name of this.names(dir)) {
        const child = joinRel(dir, name);
        const st = this.lstatChild(child);
        const w = pacer.tick();
        if (w) await w;
        if (st === null) continue;
        visit(child, st);
        if (st.isDirectory()) stack.push(child);
      }
    }
  }
}

interface ListingItem {
  name: Buffer;
  /** The name, with a '/' for the stretch below a directory. */
  key: Buffer;
  below: boolean;
}

interface Listing {
  dir: Buffer;
  items: ListingItem[];
  i: number;
}

const TYPE_MASK = fsc.S_IFMT;

/** True when lstat alone shows a difference: type, permission bits, owner, device number. */
export function statsDiffer(a: Stats, b: Stats): boolean {
  if ((a.mode & TYPE_MASK) !== (b.mode & TYPE_MASK)) return true;
  if ((a.mode & 0o7777) !== (b.mode & 0o7777)) return true;
  if (a.uid !== b.uid || a.gid !== b.gid) return true;
  if ((a.isCharacterDevice() || a.isBlockDevice()) && a.rdev !== b.rdev) return true;
  return false;
}

export function symlinkTargetsDiffer(oldAbs: Buffer, newAbs: Buffer): boolean {
  return !readlinkSync(oldAbs, { encoding: 'buffer' }).equals(readlinkSync(newAbs, { encoding: 'buffer' }));
}

const BLOCK = 64 * 1024;
// Shared by all comparisons: each block pair is filled and compared with no await in
// between, so concurrent diffs cannot see each other's bytes.
const blockA = Buffer.alloc(BLOCK);
const blockB = Buffer.alloc(BLOCK);

/**
 * The byte spans of a file of `size` bytes to compare: all of it, or only `ranges` (flat
 * [offset, length, …] pairs, from the send stream) clipped to the file, sorted and merged.
 */
export function spansToCompare(size: number, ranges: readonly number[] | null = null): Array<[number, number]> {
  if (ranges === null) return size > 0 ? [[0, size]] : [];
  const spans: Array<[number, number]> = [];
  for (let i = 0; i + 1 < ranges.length; i += 2) {
    const start = ranges[i] as number;
    const end = Math.min(size, start + (ranges[i + 1] as number));
    if (end > start) spans.push([start, end]);
  }
  spans.sort((x, y) => x[0] - y[0]);
  const merged: Array<[number, number]> = [];
  for (const span of spans) {
    const last = merged.at(-1);
    if (last && span[0] <= last[1]) last[1] = Math.max(last[1], span[1]);
    else merged.push(span);
  }
  return merged;
}

/** Total bytes of `spans`. */
export const spanBytes = (spans: ReadonlyArray<readonly [number, number]>): number => spans.reduce((n, [s, e]) => n + e - s, 0);

/**
 * Byte comparison of two regular files of `size` bytes each over `spans` (default: all of
 * it), streamed in blocks; yields to the loop between blocks of large files.
 */
export async function contentsDiffer(
  oldAbs: Buffer,
  newAbs: Buffer,
  size: number,
  pacer: Pacer,
  spans: ReadonlyArray<readonly [number, number]> = size > 0 ? [[0, size]] : [],
): Promise<boolean> {
  if (spans.length === 0) return false;
  const flags = fsc.O_RDONLY | fsc.O_NOFOLLOW;
  const fa = openSync(oldAbs, flags);
  try {
    const fb = openSync(newAbs, flags);
    try {
      // The sizes are known (and the trees read-only), so no read is spent finding EOF.
      for (const [start, end] of spans) {
        for (let pos = start; pos < end; pos += BLOCK) {
          const want = Math.min(BLOCK, end - pos);
          if (blocksDiffer(fa, fb, want, pos)) return true;
          if (end - start > BLOCK) await pacer.tick(Math.ceil(want / 4096));
        }
      }
      return false;
    } finally {
      closeSync(fb);
    }
  } finally {
    closeSync(fa);
  }
}

/** The synchronous twin of contentsDiffer, for spans known to be small. */
export function contentsDifferSync(oldAbs: Buffer, newAbs: Buffer, spans: ReadonlyArray<readonly [number, number]>): boolean {
  if (spans.length === 0) return false;
  const flags = fsc.O_RDONLY | fsc.O_NOFOLLOW;
  const fa = openSync(oldAbs, flags);
  try {
    const fb = openSync(newAbs, flags);
    try {
      for (const [start, end] of spans) {
        for (let pos = start; pos < end; pos += BLOCK) if (blocksDiffer(fa, fb, Math.min(BLOCK, end - pos), pos)) return true;
      }
      return false;
    } finally {
      closeSync(fb);
    }
  } finally {
    closeSync(fa);
  }
}

function blocksDiffer(fa: number, fb: number, want: number, pos: number): boolean {
  const na = readFull(fa, blockA, want, pos);
  const nb = readFull(fb, blockB, want, pos);
  return na !== want || nb !== want || blockA.compare(blockB, 0, want, 0, want) !== 0;
}

function readFull(fd: number, buf: Buffer, want: number, pos: number): number {
  let n = 0;
  while (n < want) {
    const r = readSync(fd, buf, n, want - n, pos + n);
    if (r === 0) break;
    n += r;
  }
  return n;
}

/** O_PATH: an fd that names an inode (symlinks included) without opening it for I/O. */
const O_PATH = 0o10000000;
/** Bytes of argv per getfattr run (ARG_MAX is usually 2 MiB, shared with the environment). */
const ARGV_BYTES = 512 * 1024;
const FD_BATCH = 256;
const GETFATTR_ARGS = ['--dump', '--match=-', '--encoding=hex', '--absolute-names'];

/** How getfattr prints a path: only '\\', '\n' and '\r' are escaped, as \ooo octal. */
function getfattrQuoted(path: Buffer): string {
  return path.toString('latin1').replace(/[\\\n\r]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`);
}

/**
 * The xattrs (names and values, in a canonical text form; '' for none) of each path, in
 * order, read by `getfattr` since Node has no xattr API.
 *
 * UTF-8 paths go on the command line, many per run, with `-h` (a symlink's own xattrs).
 * Other paths cannot: Node passes argv as UTF-8 strings. Those are opened O_PATH|O_NOFOLLOW
 * and handed over as `/proc/<our pid>/fd/<n>`, a magic link that names the inode itself,
 * a symlink included (so without `-h`).
 */
export async function readXattrs(paths: readonly Buffer[], options: { signal?: AbortSignal } = {}): Promise<string[]> {
  const out: string[] = new Array<string>(paths.length).fill('');
  const plain: number[] = [];
  const odd: number[] = [];
  paths.forEach((p, i) => (isUtf8(p) ? plain : odd).push(i));

  let batch: number[] = [];
  let bytes = 0;
  const flushPlain = async (): Promise<void> => {
    if (batch.length === 0) return;
    const idx = batch;
    batch = [];
    bytes = 0;
    const byName = new Map(idx.map((i) => [getfattrQuoted(paths[i] as Buffer), i]));
    const args = [...GETFATTR_ARGS, '--no-dereference', ...idx.map((i) => (paths[i] as Buffer).toString('utf8'))];
    parseGetfattr(await getfattr(args, options.signal), (name) => byName.get(name), out);
  };
  for (const i of plain) {
    const size = (paths[i] as Buffer).length + 1 + 8;
    if (bytes + size > ARGV_BYTES) await flushPlain();
    batch.push(i);
    bytes += size;
  }
  await flushPlain();

  for (let start = 0; start < odd.length; start += FD_BATCH) {
    const idx = odd.slice(start, start + FD_BATCH);
    const fds: number[] = [];
    try {
      for (const i of idx) fds.push(openSync(paths[i] as Buffer, O_PATH | fsc.O_NOFOLLOW));
      const prefix = `/proc/${process.pid}/fd/`;
      const byName = new Map(fds.map((fd, k) => [`${prefix}${fd}`, idx[k] as number]));
      const stdout = await getfattr([...GETFATTR_ARGS, ...byName.keys()], options.signal);
      parseGetfattr(stdout, (name) => byName.get(name), out);
    } finally {
      for (const fd of fds) closeSync(fd);
    }
  }
  return out;
}

async function getfattr(args: string[], signal: AbortSignal | undefined): Promise<Buffer> {
  return (await run('getfattr', args, { signal, timeoutMs: 300_000 })).stdout;
}

/** Parses `getfattr --dump --encoding=hex` output: "# file: NAME", then "name=0x…" lines. */
function parseGetfattr(stdout: Buffer, indexOf: (name: string) => number | undefined, out: string[]): void {
  let current: number | undefined;
  let lines: string[] = [];
  const flush = (): void => {
    if (current !== undefined) out[current] = lines.sort().join('\n');
    lines = [];
  };
  for (const line of stdout.toString('latin1').split('\n')) {
    if (line.startsWith('# file: ')) {
      flush();
      current = indexOf(line.slice('# file: '.length));
      if (current === undefined) throw new Error(`getfattr reported a file it was not asked about: ${line}`);
    } else if (line !== '') {
      lines.push(line);
    }
  }
  flush();
}

/** Resolves every path (relative to `root`, no leading '/') of inode `ino` in the tree at `root`. */
export type InodePathResolver = (root: string, ino: number, options: { signal?: AbortSignal }) => Promise<Buffer[]>;

/** The send path cannot finish the job (e.g. hardlinks it cannot resolve); use the full walk. */
export class NeedsWalkError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'NeedsWalkError';
  }
}

export interface VerifyOptions {
  signal?: AbortSignal;
  /**
   * Finds the other names of a changed inode with several hard links: the stream names
   * each changed inode by one path only. Without it, such a case throws NeedsWalkError.
   */
  inodePaths?: InodePathResolver;
}

/** Pairs per getfattr round; rounds run in the background, at most two at a time. */
const XATTR_PAIRS_PER_ROUND = 4096;
const XATTR_ROUNDS_IN_FLIGHT = 2;

/**
 * Collects entries, one per path. Xattr comparisons are queued and run by getfattr in
 * the background while the caller goes on comparing (a separate process: it overlaps).
 */
export class DiffCollector {
  private readonly entries = new Map<string, DiffEntry>();
  private xattrPending: Buffer[] = [];
  private readonly xattrRounds: Promise<void>[] = [];
  private xattrFailure: { err: unknown } | undefined;

  constructor(
    readonly oldTree: Tree,
    readonly newTree: Tree,
    private readonly pacer: Pacer,
    private readonly signal: AbortSignal | undefined,
  ) {}

  has(rel: Buffer): boolean {
    return this.entries.has(key(rel));
  }

  add(rel: Buffer, kind: ChangeKind): void {
    const k = key(rel);
    if (!this.entries.has(k)) this.entries.set(k, { path: entryPath(rel), kind });
  }

  /** `rel` and everything below it exist only on one side. */
  async addTree(rel: Buffer, st: Stats, side: 'old' | 'new'): Promise<void> {
    const kind: ChangeKind = side === 'old' ? 'deleted' : 'added';
    this.add(rel, kind);
    if (st.isDirectory()) await this.addBelow(rel, side);
  }

  /** Everything below directory `rel` exists only on one side. */
  async addBelow(rel: Buffer, side: 'old' | 'new'): Promise<void> {
    const kind: ChangeKind = side === 'old' ? 'deleted' : 'added';
    const tree = side === 'old' ? this.oldTree : this.newTree;
    await tree.eachBelow(rel, this.pacer, (child) => this.add(child, kind));
  }

  /**
   * Compares `rel`, present on both sides. `content`/`xattrs` false means the caller
   * knows those did not change (the stream said so). Directories below a type change are
   * listed; directories present on both sides are not descended here.
   */
  async compare(rel: Buffer, a: Stats, b: Stats, check: { content: boolean; xattrs: boolean }): Promise<void> {
    if ((a.mode & TYPE_MASK) !== (b.mode & TYPE_MASK)) {
      this.add(rel, 'modified');
      if (a.isDirectory()) await this.addBelow(rel, 'old');
      if (b.isDirectory()) await this.addBelow(rel, 'new');
      return;
    }
    if (statsDiffer(a, b)) return this.add(rel, 'modified');
    if (a.isSymbolicLink()) {
      if (symlinkTargetsDiffer(this.oldTree.abs(rel), this.newTree.abs(rel))) return this.add(rel, 'modified');
    } else if (a.isFile() && check.content) {
      if (a.size !== b.size) return this.add(rel, 'modified');
      if (a.size > 0 && (await contentsDiffer(this.oldTree.abs(rel), this.newTree.abs(rel), a.size, this.pacer))) {
        return this.add(rel, 'modified');
      }
    }
    if (check.xattrs) {
      this.xattrPending.push(rel);
      if (this.xattrPending.length >= XATTR_PAIRS_PER_ROUND) await this.startXattrRound();
    }
  }

  private async startXattrRound(): Promise<void> {
    const seen = new Set<string>();
    const rels = this.xattrPending.filter((rel) => {
      const k = key(rel);
      if (seen.has(k) || this.entries.has(k)) return false;
      seen.add(k);
      return true;
    });
    this.xattrPending = [];
    while (this.xattrRounds.length >= XATTR_ROUNDS_IN_FLIGHT) await this.xattrRounds.shift();
    if (this.xattrFailure) throw this.xattrFailure.err;
    if (rels.length === 0) return;
    const paths = [...rels.map((rel) => this.oldTree.abs(rel)), ...rels.map((rel) => this.newTree.abs(rel))];
    // Handled at once (a rejection must not go unhandled while the walk goes on); the
    // failure is rethrown by the next round or by finish().
    const round = readXattrs(paths, { signal: this.signal }).then(
      (values) => {
        rels.forEach((rel, i) => {
          if (values[i] !== values[i + rels.length]) this.add(rel, 'modified');
        });
      },
      (err: unknown) => {
        this.xattrFailure ??= { err };
      },
    );
    this.xattrRounds.push(round);
  }

  /** Waits for the xattr comparisons, then returns the sorted entries. */
  async finish(): Promise<DiffEntry[]> {
    await this.startXattrRound();
    await Promise.all(this.xattrRounds);
    if (this.xattrFailure) throw this.xattrFailure.err;
    return [...this.entries.values()].sort(compareDiffEntries);
  }
}
