/**
 * The candidates of a diff read from the two btrfs trees themselves, without a send.
 *
 * btrfs never changes a tree block in place: a block that changes is written anew, with the
 * number of the transaction that wrote it (its generation). So when the new tree descends
 * from the old one (it is a snapshot of the subvolume the old one was taken from, taken
 * later, or of a snapshot of it; `lineage`), every block of the new tree written up to the
 * old tree's creation is a block of the old tree, and what changed is in the blocks written
 * since. The kernel's tree search skips a subtree whose generation is older than the one
 * asked for (`min_transid`, as `btrfs subvolume find-new` uses it), so reading those blocks
 * costs what changed, like the send does, without building the send's paths and commands:
 * on the package install, 6 ms against the send's 150–240 ms (bench/README.md).
 *
 * Of the items read, an inode item says whether its inode changed: btrfs writes the inode
 * item, with the transaction's number in its `transid`, whenever anything of the inode
 * changes (data, size, mode, owner, xattrs, names, a directory's entries). For each inode
 * that changed, all its items are read in both trees and compared:
 * - a directory's entries (DIR_INDEX): a name only in the old tree is a removal at the old
 *   path, a name only in the new tree an addition (of a new inode, or of an old one moved
 *   or linked here);
 * - names (INODE_REF, INODE_EXTREF): the paths the inode's other changes are reported at;
 * - mode, owner and device number (the inode item); xattrs by name and value (XATTR_ITEM);
 *   the file extents (EXTENT_DATA): the byte ranges whose extents differ are the only ones
 *   whose bytes can differ (elsewhere both trees read the same extents).
 * A removed inode has no items in the new tree, but its directory's entry went away, so it
 * is found as a removal there.
 *
 * The result is a superset of the changed paths, as the send replay's is (replay.ts), and
 * verification (sorted.ts) decides each. When the trees are not so related, when the items
 * to read would exceed a budget (tens of thousands of changed inodes), or when directories
 * that changed little hold many entries (the send then reads less than their entries do),
 * this throws TreeCompareUnfit and the caller uses the send.
 */
import { closeSync, constants as fsc, fstatSync, openSync } from 'node:fs';
import type { Candidate } from './replay.js';
import type { Meta } from './sorted.js';
import type { InodePathResolver } from './verify.js';

/** A key of a btrfs tree: objectid, type, offset (u64 parts as Number, or BigInt past 2^53). */
export type TreeKey = readonly [objectid: number | bigint, type: number, offset: number | bigint];

/** The ioctls the comparison makes (btrfs-ioctl.ts). Each throws on failure. */
export interface TreeReader {
  /** The id of the subvolume whose root directory `fd` is. */
  treeId(fd: number): number;
  /**
   * The items of tree `tree` (0: the one `fd` is in) from `min` to `max` that are in leaves
   * written at `minTransid` or later, as the kernel's search headers each followed by its
   * item, only those of the item `types` given. Throws an error with code E2BIG past
   * `limitBytes`.
   */
  search(fd: number, tree: number, min: TreeKey, max: TreeKey, minTransid: number, limitBytes: number, types?: readonly number[]): Buffer;
  /** The path of directory `objectid` in tree `tree` from its root, with a trailing '/' ("" for the root). */
  inoLookup(fd: number, tree: number, objectid: number): Buffer;
}

/** The trees cannot be compared this way (the caller uses the send). */
class TreeCompareUnfit extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TreeCompareUnfit';
  }
}

export interface TreeCandidates {
  candidates: Candidate[];
  /** Every name of an inode of the new tree, from its own items. */
  inodePaths: InodePathResolver;
}

export interface TreeCompareOptions {
  /**
   * Bytes of items read past which the comparison gives up (TreeCompareUnfit). Default: 4 MiB
   * of changed inode items, then 16 MiB of other items, or 16 times the inode items when that
   * is more. (It runs synchronously: this also bounds how long it holds `zomg serve`'s event
   * loop, to ~64 MiB of items.)
   */
  budgetBytes?: number;
  /**
   * Compare the entries of large directories that changed little, which by default are left
   * to the send (DIR_BYTES_FLOOR): tests set it, to check the comparison on such trees.
   */
  readLargeDirectories?: boolean;
}

// Item types (linux/btrfs_tree.h).
const INODE_ITEM = 1;
const INODE_REF = 12;
const INODE_EXTREF = 13;
const XATTR_ITEM = 24;
const DIR_INDEX = 96;
const EXTENT_DATA = 108;
const ROOT_ITEM = 132;
/** The items compared (a directory's DIR_ITEMs repeat its DIR_INDEX entries, by name hash). */
const COMPARED = [INODE_ITEM, INODE_REF, INODE_EXTREF, XATTR_ITEM, DIR_INDEX, EXTENT_DATA];
const UUID_KEY_SUBVOL = 251;
const ROOT_TREE = 1;
const UUID_TREE = 9;
const FIRST_FREE = 256;
const LAST_FREE = 0xffffffffffffff00n;
const U64_MAX = 0xffffffffffffffffn;
const HEADER = 32;
/** The size of an inode item (struct btrfs_inode_item). */
const INODE_SIZE = 160;
const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
/** Objectids within this distance are read in one search. */
const RUN_GAP = 64;
/** Past this many changed ranges in one file, the whole file is compared (as replay.ts). */
const MAX_RANGES = 256;
/** Parents followed from the new tree toward the old one. */
const MAX_LINEAGE = 32;
const DEFAULT_BUDGET = 16 * 1024 * 1024;
/**
 * The inode items of the blocks written since (192 bytes each, with the search header) past
 * which the send is used: ~20,000 changed inodes, where checking each path costs more than
 * either way of finding them.
 */
const INODE_ITEMS_BUDGET = 4 * 1024 * 1024;
/**
 * A directory that changed is read whole in both trees (its entries are compared), where the
 * send costs what changed in it: past this many bytes of names (a directory's size) in the
 * directories that changed, and past DIR_BYTES_PER_CHANGE per changed inode, the send is
 * used. (1,000-entry directories with one change each: the send took 13–21 ms, the entries
 * 20–33 ms; a package install changes 91 KB of directories for its 1,539 inodes.)
 */
const DIR_BYTES_FLOOR = 16 * 1024;
const DIR_BYTES_PER_CHANGE = 256;

const u64 = (b: Buffer, at: number): number => b.readUInt32LE(at) + b.readUInt32LE(at + 4) * 0x100000000;

/** What a subvolume's root item says of its history. */
interface RootInfo {
  id: number;
  readOnly: boolean;
  uuid: string;
  parentUuid: string;
  ctransid: number;
  otransid: number;
}

const ZERO_UUID = '00000000000000000000000000000000';

/**
 * Every item of one inode in one tree, as the search gave them: nothing is decoded until a
 * comparison needs it (an inode whose items are byte for byte the same costs no parsing).
 */
interface Items {
  /** The search result that holds the items. */
  buf: Buffer;
  /** Where in `buf` the inode item is, or -1. */
  inode: number;
  /**
   * The other items by kind, in key order: key offset, where in `buf`, length (three numbers
   * each). `refs` holds INODE_REF and INODE_EXTREF items, with the type first (four numbers).
   */
  refs: number[];
  xattrs: number[];
  entries: number[];
  extents: number[];
}

const newItems = (buf: Buffer): Items => ({ buf, inode: -1, refs: [], xattrs: [], entries: [], extents: [] });
const NO_ITEMS: Items = newItems(Buffer.alloc(0));

/** One side of the comparison: an open tree and what was read of it. */
class Side {
  readonly fd: number;
  readonly id: number;
  private readonly dirPaths = new Map<number, string>();

  constructor(
    readonly root: string,
    private readonly reader: TreeReader,
  ) {
    this.fd = openSync(root, fsc.O_RDONLY | fsc.O_DIRECTORY);
    try {
      // The root directory of a subvolume: of any other directory, the subvolume's items
      // would be compared whole, with paths from the subvolume's root.
      if (fstatSync(this.fd).ino !== FIRST_FREE) throw new TreeCompareUnfit(`${root} is not the root of a subvolume`);
      this.id = reader.treeId(this.fd);
    } catch (err) {
      closeSync(this.fd);
      throw err;
    }
  }

  close(): void {
    closeSync(this.fd);
  }

  /**
   * The path of directory `dir` from the root, with a trailing slash ("" for the root), as
   * a latin1 string: paths are built, compared and kept as strings, Buffers only at the end.
   */
  dirPath(dir: number): string {
    let p = this.dirPaths.get(dir);
    if (p === undefined) {
      p = dir === FIRST_FREE ? '' : this.reader.inoLookup(this.fd, 0, dir).toString('latin1');
      this.dirPaths.set(dir, p);
    }
    return p;
  }

  /** The path of `name` (latin1) in directory `dir`. */
  pathOf(dir: number, name: string): string {
    return this.dirPath(dir) + name;
  }
}

/** Counts the bytes read against the budget. */
class Budget {
  constructor(public left: number) {}

  search(reader: TreeReader, fd: number, tree: number, min: TreeKey, max: TreeKey, minTransid: number, types?: readonly number[]): Buffer {
    let buf: Buffer;
    try {
      buf = reader.search(fd, tree, min, max, minTransid, Math.max(this.left, 0), types);
    } catch (err) {
      if ((err as { code?: unknown }).code === 'E2BIG') throw new TreeCompareUnfit('the changed items exceed the budget of the tree comparison', { cause: err });
      throw err;
    }
    this.left -= buf.length;
    return buf;
  }
}

/**
 * Calls `fn(objectid, type, offset, at, len)` for each item of a search result: its bytes
 * are `buf[at, at + len)` (no Buffer made for items nobody looks at). For the few items of
 * the lineage checks; the loops over thousands of items read the headers themselves (a
 * call per item is a measurable part of a cold start).
 */
function eachItem(buf: Buffer, fn: (objectid: number, type: number, offset: number, at: number, len: number) => void): void {
  // DataView's reads are builtins: fast from the first call, which a start-up spends here.
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.length);
  for (let at = 0; at + HEADER <= buf.length; ) {
    const hi = dv.getUint32(at + 12, true);
    const len = dv.getUint32(at + 28, true);
    // Objectids past 2^53 are btrfs' special ones (orphans, the free space cache): skipped.
    if (hi < 0x200000) fn(dv.getUint32(at + 8, true) + hi * 0x100000000, dv.getUint32(at + 24, true), dv.getUint32(at + 16, true) + dv.getUint32(at + 20, true) * 0x100000000, at + HEADER, len);
    at += HEADER + len;
  }
}

/** The objectid of the search header at `at`; -1 past 2^53 (btrfs' special ones: orphans, the free space cache). */
const headerObjectid = (dv: DataView, at: number): number => {
  const hi = dv.getUint32(at + 12, true);
  return hi < 0x200000 ? dv.getUint32(at + 8, true) + hi * 0x100000000 : -1;
};

/** The root item of subvolume `id` (read from the root tree). */
function rootInfo(reader: TreeReader, fd: number, id: number): RootInfo | undefined {
  const buf = reader.search(fd, ROOT_TREE, [id, ROOT_ITEM, 0], [id, ROOT_ITEM, U64_MAX], 0, 1 << 20);
  let info: RootInfo | undefined;
  eachItem(buf, (objectid, type, _offset, at, len) => {
    if (objectid !== id || type !== ROOT_ITEM) return;
    const d = buf.subarray(at, at + len);
    // Items of the old format end before the uuids and transids (at 239 bytes).
    if (d.length < 311) return;
    info = {
      id,
      readOnly: (d.readUInt32LE(208) & 1) !== 0,
      uuid: d.toString('hex', 247, 263),
      parentUuid: d.toString('hex', 263, 279),
      ctransid: u64(d, 295),
      otransid: u64(d, 303),
    };
  });
  return info;
}

/** The subvolume with this uuid (the uuid tree), or undefined. */
function byUuid(reader: TreeReader, fd: number, uuid: string): RootInfo | undefined {
  const raw = Buffer.from(uuid, 'hex');
  const lo = raw.readBigUInt64LE(0);
  const hi = raw.readBigUInt64LE(8);
  const buf = reader.search(fd, UUID_TREE, [lo, UUID_KEY_SUBVOL, hi], [lo, UUID_KEY_SUBVOL, hi], 0, 1 << 20);
  if (buf.length < HEADER + 8) return undefined;
  const len = buf.readUInt32LE(28);
  // The item lists subvolume ids; the first is the one that holds it.
  if (len < 8) return undefined;
  return rootInfo(reader, fd, u64(buf, HEADER));
}

/**
 * The transaction up to which every block of `next` is a block of `prev`, or a reason why
 * there is none. `prev` must be a read-only snapshot whose items never changed after its
 * creation (its root item's ctransid here; its blocks, by the caller); then `next` must
 * descend from it: a later snapshot of the subvolume `prev` was taken from, a snapshot of
 * `prev` itself, or a snapshot of such, at any depth. (`prev`'s generation does not say: a
 * snapshot taken of `prev` rewrites its root block, and so raises it.)
 */
function lineage(reader: TreeReader, fd: number, prev: RootInfo, next: RootInfo): number | string {
  if (!prev.readOnly || !next.readOnly) return 'a side is not read-only';
  if (prev.ctransid > prev.otransid) return 'the old tree changed after its creation';
  if (prev.id === next.id) return 'the same subvolume on both sides';
  let cur: RootInfo | undefined = next;
  for (let i = 0; i < MAX_LINEAGE && cur !== undefined; i++) {
    if (cur.parentUuid === ZERO_UUID) return 'the new tree does not descend from the old one';
    if (cur.parentUuid === prev.uuid) return prev.otransid;
    if (cur.parentUuid === prev.parentUuid && cur.otransid > prev.otransid) return prev.otransid;
    cur = byUuid(reader, fd, cur.parentUuid);
  }
  return 'the new tree does not descend from the old one';
}

/**
 * Reads the items of each objectid in `objects` (sorted) into `into` (all of them, or those
 * of the item `types` given), in place of what it held of them.
 */
function readObjects(reader: TreeReader, budget: Budget, side: Side, objects: readonly number[], into: Map<number, Items>, types?: readonly number[]): void {
  for (let i = 0; i < objects.length; ) {
    const first = objects[i] as number;
    let last = first;
    let j = i + 1;
    while (j < objects.length && (objects[j] as number) - last <= RUN_GAP) last = objects[j++] as number;
    const buf = budget.search(reader, side.fd, 0, [first, 0, 0], [last, 255, U64_MAX], 0, types);
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.length);
    // Both the items and objects[i, j) are in objectid order: `k` walks the wanted ones.
    let k = i;
    let current = -1;
    let it: Items | undefined;
    for (let at = 0; at + HEADER <= buf.length; ) {
      const objectid = headerObjectid(dv, at);
      const len = dv.getUint32(at + 28, true);
      if (objectid !== current) {
        current = objectid;
        while (k < j && (objects[k] as number) < objectid) k++;
        it = k < j && objects[k] === objectid ? newItems(buf) : undefined;
        if (it !== undefined) into.set(objectid, it);
      }
      if (it !== undefined) {
        const type = dv.getUint32(at + 24, true);
        const offset = dv.getUint32(at + 16, true) + dv.getUint32(at + 20, true) * 0x100000000;
        const data = at + HEADER;
        if (type === INODE_ITEM) it.inode = len >= INODE_SIZE ? data : -1;
        else if (type === DIR_INDEX) it.entries.push(offset, data, len);
        else if (type === EXTENT_DATA) it.extents.push(offset, data, len);
        else if (type === XATTR_ITEM) it.xattrs.push(offset, data, len);
        else if (type === INODE_REF || type === INODE_EXTREF) it.refs.push(type, offset, data, len);
      }
      at += HEADER + len;
    }
    i = j;
  }
}

/** The names of an inode (INODE_REF, INODE_EXTREF): the directory each is in, and the name (latin1). */
function refsOf(it: Items): Array<{ parent: number; name: string }> {
  const refs: Array<{ parent: number; name: string }> = [];
  const { buf, refs: items } = it;
  for (let k = 0; k < items.length; k += 4) {
    const type = items[k];
    const offset = items[k + 1] as number;
    const start = items[k + 2] as number;
    const end = start + (items[k + 3] as number);
    if (type === INODE_REF) {
      // (index u64, name_len u16, name) repeated, all in directory `offset`.
      for (let at = start; at + 10 <= end; ) {
        const n = buf.readUInt16LE(at + 8);
        refs.push({ parent: offset, name: buf.toString('latin1', at + 10, at + 10 + n) });
        at += 10 + n;
      }
    } else if (type === INODE_EXTREF) {
      // (parent u64, index u64, name_len u16, name) repeated.
      for (let at = start; at + 18 <= end; ) {
        const n = buf.readUInt16LE(at + 16);
        refs.push({ parent: u64(buf, at), name: buf.toString('latin1', at + 18, at + 18 + n) });
        at += 18 + n;
      }
    }
  }
  return refs;
}

/** The xattrs of an inode: name → value (latin1). btrfs_dir_items: location (17), transid (8), data_len u16, name_len u16, type u8, name, data; several in one item on a hash collision. */
function xattrsOf(it: Items): Map<string, string> {
  const out = new Map<string, string>();
  const x = it.xattrs;
  for (let k = 0; k < x.length; k += 3) {
    const end = (x[k + 1] as number) + (x[k + 2] as number);
    for (let at = x[k + 1] as number; at + 30 <= end; ) {
      const dataLen = it.buf.readUInt16LE(at + 25);
      const nameLen = it.buf.readUInt16LE(at + 27);
      out.set(it.buf.toString('latin1', at + 30, at + 30 + nameLen), it.buf.toString('latin1', at + 30 + nameLen, at + 30 + nameLen + dataLen));
      at += 30 + nameLen + dataLen;
    }
  }
  return out;
}

/** Whether two inodes' items of one kind differ at all, byte for byte (their keys and bytes). */
function rawDiffer(a: Items, b: Items, x: readonly number[], y: readonly number[]): boolean {
  if (x.length !== y.length) return true;
  for (let k = 0; k < x.length; k += 3) {
    const len = x[k + 2] as number;
    if (x[k] !== y[k] || len !== y[k + 2] || a.buf.compare(b.buf, y[k + 1] as number, (y[k + 1] as number) + len, x[k + 1] as number, (x[k + 1] as number) + len) !== 0) return true;
  }
  return false;
}

/**
 * Walks two lists of items (key offset, where, length: three numbers each) sorted by key: `both`
 * gets the positions of a key in both lists, `onlyA` and `onlyB` those of a key in one.
 */
function mergeByKey(x: readonly number[], y: readonly number[], both: (i: number, j: number) => void, onlyA: (i: number) => void, onlyB: (j: number) => void): void {
  let i = 0;
  let j = 0;
  while (i < x.length || j < y.length) {
    const kx = i < x.length ? (x[i] as number) : Infinity;
    const ky = j < y.length ? (y[j] as number) : Infinity;
    if (kx === ky) {
      both(i, j);
      i += 3;
      j += 3;
    } else if (kx < ky) {
      onlyA(i);
      i += 3;
    } else {
      onlyB(j);
      j += 3;
    }
  }
}

/** The name (latin1) of an entry (a DIR_INDEX item's btrfs_dir_item at `at`). */
const entryName = (buf: Buffer, at: number): string => buf.toString('latin1', at + 30, at + 30 + buf.readUInt16LE(at + 27));

const NO_ENTRIES: number[] = [];
/** Of an inode item at `at` in `buf`: whether it is a directory's. */
const isDir = (buf: Buffer, at: number): boolean => (buf.readUInt32LE(at + 52) & S_IFMT) === S_IFDIR;
/**
 * What lstat says of an inode, from its inode item. (The device number is btrfs' own
 * encoding, not stat's: it is only ever compared with another inode item's.)
 */
const metaOf = (objectid: number, buf: Buffer, at: number): Meta => ({
  mode: buf.readUInt32LE(at + 52),
  uid: buf.readUInt32LE(at + 44),
  gid: buf.readUInt32LE(at + 48),
  rdev: u64(buf, at + 56),
  size: u64(buf, at + 16),
  nlink: buf.readUInt32LE(at + 40),
  ino: objectid,
});

/**
 * What the comparison found at one path, until it is a Candidate: the entries that left and
 * came there, and what changed of an inode that stayed.
 */
class Found {
  maybeAdded = false;
  maybeDeleted = false;
  content = false;
  attrs = false;
  xattrs = false;
  ranges: number[] | null = [];
  /** A new inode was added here (an entry of the new tree only). */
  newInode = false;
  /** Where: the path of its directory in the new tree, with a trailing '/' (for the root, ""). */
  parent = '';
  /** Whether that directory is at the same path in the old tree (its entries were compared). */
  parentStays = false;
  /** Whether the new inode is a directory. */
  dir = false;
  /** The inode the old tree's entry here named, or -1. */
  oldIno = -1;
  /** The inode the new tree's entry here names, or -1. */
  newIno = -1;
  /** Both inode items of an inode that stayed at this path. */
  stayed: { a: Meta; b: Meta } | undefined = undefined;
  replacedXattrs: 'same' | 'differ' | undefined = undefined;

  candidate(path: string, sure: boolean): Candidate {
    const c: Candidate = {
      path: Buffer.from(path, 'latin1'),
      maybeAdded: this.maybeAdded,
      maybeDeleted: this.maybeDeleted,
      content: this.content,
      attrs: this.attrs,
      xattrs: this.xattrs,
      newInode: this.newInode,
      listNew: false,
      emptiedDir: false,
      ranges: this.ranges,
      sure,
    };
    // A path where the same inode stayed, and nothing else happened: both sides are known
    // from the inode items, and verification need not lstat them.
    if (this.stayed !== undefined && !this.maybeAdded && !this.maybeDeleted) c.known = this.stayed;
    if (this.replacedXattrs !== undefined) c.replacedXattrs = this.replacedXattrs;
    return c;
  }
}

function mapsDiffer(a: Map<string, string>, b: Map<string, string>): boolean {
  if (a.size !== b.size) return true;
  for (const [k, v] of a) if (b.get(k) !== v) return true;
  return false;
}

/**
 * The byte ranges of a file whose extents differ between the trees ([offset, length, …];
 * none when they are all the same), or null for "anywhere" (too many). An extent item is
 * compared from its ram_bytes on: its generation says when it was written, not what it holds.
 */
function changedRanges(a: Items, b: Items): number[] | null {
  const x = a.extents;
  const y = b.extents;
  const ranges: number[] = [];
  const push = (buf: Buffer, offset: number, at: number, len: number): void => {
    // ram_bytes u64, compression, encryption, other_encoding u16, type u8 (0 inline), then an
    // inline extent's bytes or the disk_bytenr, disk_num_bytes, offset and num_bytes of a
    // regular or preallocated one.
    const inline = buf[at + 20] === 0;
    ranges.push(offset, inline || len < 53 ? u64(buf, at + 8) : u64(buf, at + 45));
  };
  mergeByKey(x, y, (i, j) => {
    const atA = x[i + 1] as number;
    const atB = y[j + 1] as number;
    const len = x[i + 2] as number;
    if (len !== y[j + 2] || a.buf.compare(b.buf, atB + 8, atB + len, atA + 8, atA + len) !== 0) {
      push(a.buf, x[i] as number, atA, len);
      push(b.buf, y[j] as number, atB, y[j + 2] as number);
    }
  }, (i) => push(a.buf, x[i] as number, x[i + 1] as number, x[i + 2] as number), (j) => push(b.buf, y[j] as number, y[j + 1] as number, y[j + 2] as number));
  if (ranges.length > MAX_RANGES * 2) return null;
  return ranges;
}

/**
 * The candidates of the diff from `oldRoot` to `newRoot` (both read-only subvolume roots),
 * read from their trees; TreeCompareUnfit when they cannot be compared this way. See the
 * module comment.
 */
export function treeCandidates(oldRoot: string, newRoot: string, reader: TreeReader, options: TreeCompareOptions = {}): TreeCandidates {
  const oldSide = new Side(oldRoot, reader);
  let newSide: Side;
  try {
    newSide = new Side(newRoot, reader);
  } catch (err) {
    oldSide.close();
    throw err;
  }
  try {
    const prev = rootInfo(reader, oldSide.fd, oldSide.id);
    const next = rootInfo(reader, newSide.fd, newSide.id);
    if (prev === undefined || next === undefined) throw new TreeCompareUnfit('a root item could not be read');
    // One filesystem: the old tree's root item, read through the new tree, is the old tree's
    // (a copy of the image elsewhere has the same uuids, but transactions of its own).
    if (rootInfo(reader, newSide.fd, prev.id)?.uuid !== prev.uuid) throw new TreeCompareUnfit('the trees are on different filesystems');
    const since = lineage(reader, newSide.fd, prev, next);
    if (typeof since === 'string') throw new TreeCompareUnfit(since);
    // Nothing of the old tree was written after its creation. (A snapshot taken of it
    // copies its root block, which holds no items unless the whole tree is that one leaf:
    // then this refuses a tree small enough for the send.)
    if (reader.search(oldSide.fd, 0, [0, 0, 0], [U64_MAX, 255, U64_MAX], since + 1, 1 << 20).length > 0) {
      throw new TreeCompareUnfit('the old tree has blocks written after its creation');
    }

    // The blocks written since the old tree was made (its own transaction included, which
    // costs a few needless comparisons and guards the edge).
    const budget = new Budget(options.budgetBytes ?? INODE_ITEMS_BUDGET);
    const inodes = budget.search(reader, newSide.fd, 0, [FIRST_FREE, 0, 0], [LAST_FREE, 255, U64_MAX], since, [INODE_ITEM]);
    // A budget that grows with what changed: 16 times the inode items of the blocks written
    // (10,000 rewritten files: 1.9 MB of inode items, 9.3 MB read in all).
    if (options.budgetBytes === undefined) budget.left = Math.max(DEFAULT_BUDGET, 16 * inodes.length);
    let changed: number[] = [];
    /** Inodes last written in the old tree's own transaction: most were written before it was taken. */
    const sameTransaction: number[] = [];
    /** Where in `inodes` the new tree's inode item of each inode that changed is. */
    const newInodes = new Map<number, number>();
    const dv = new DataView(inodes.buffer, inodes.byteOffset, inodes.length);
    for (let at = 0; at + HEADER <= inodes.length; ) {
      const objectid = headerObjectid(dv, at);
      const len = dv.getUint32(at + 28, true);
      const data = at + HEADER;
      at = data + len;
      if (objectid < 0 || dv.getUint32(data - 8, true) !== INODE_ITEM || len < INODE_SIZE) continue;
      const transid = dv.getUint32(data + 8, true) + dv.getUint32(data + 12, true) * 0x100000000;
      if (transid < since) continue;
      (transid === since ? sameTransaction : changed).push(objectid);
      newInodes.set(objectid, data);
    }
    if (sameTransaction.length > 0) {
      // An inode written in the transaction that made the old tree, before it was taken, is the
      // same item in both trees, and btrfs writes an inode's item whenever it writes anything
      // of the inode: one whose item is the same in both is left out. (Cheaper than reading all
      // of its items, and every write in the 30 s before a snapshot lands in its transaction.)
      const oldInodes = new Map<number, Items>();
      readObjects(reader, budget, oldSide, sameTransaction, oldInodes, [INODE_ITEM]);
      const differ: number[] = [];
      for (const o of sameTransaction) {
        const a = oldInodes.get(o);
        const atB = newInodes.get(o) as number;
        if (a === undefined || a.inode < 0 || a.buf.compare(inodes, atB, atB + INODE_SIZE, a.inode, a.inode + INODE_SIZE) !== 0) differ.push(o);
        else newInodes.delete(o);
      }
      changed = [...changed, ...differ].sort((x, y) => x - y);
    }
    let dirBytes = 0;
    for (const at of newInodes.values()) if (isDir(inodes, at)) dirBytes += u64(inodes, at + 16);
    if (!options.readLargeDirectories && dirBytes > DIR_BYTES_FLOOR && dirBytes > DIR_BYTES_PER_CHANGE * changed.length) {
      throw new TreeCompareUnfit(`large directories changed (${dirBytes} bytes of names for ${changed.length} changed inodes): the send reads less`);
    }
    // Items come in key order, so the objectids are sorted already.
    const oldItems = new Map<number, Items>();
    readObjects(reader, budget, oldSide, changed, oldItems, COMPARED);
    /** Whether `objectid` names the same inode in both trees (and not a new one with that number). */
    const inBoth = (objectid: number): boolean => {
      const a = oldItems.get(objectid);
      const b = newInodes.get(objectid);
      return a !== undefined && a.inode >= 0 && b !== undefined && u64(a.buf, a.inode) === u64(inodes, b);
    };
    // Of a new inode, only its inode item counts, and a new directory's entries (all of them
    // are additions); an inode of the old tree is read whole.
    const toRead: number[] = [];
    for (const o of changed) if (isDir(inodes, newInodes.get(o) as number) || inBoth(o)) toRead.push(o);
    const newItemsOf = new Map<number, Items>();
    readObjects(reader, budget, newSide, toRead, newItemsOf, COMPARED);

    /** What was found at each path (latin1), in the order met. */
    const out = new Map<string, Found>();
    const found = (k: string): Found => {
      let f = out.get(k);
      if (f === undefined) {
        f = new Found();
        out.set(k, f);
      }
      return f;
    };
    const namesOf = new Map<number, string[]>();
    for (const objectid of changed) {
      const atB = newInodes.get(objectid) as number;
      const b = newItemsOf.get(objectid) ?? NO_ITEMS;
      const a0 = oldItems.get(objectid) ?? NO_ITEMS;
      const same = inBoth(objectid);
      // Entries: what left the old directory, what came into the new one. Both lists are in
      // the order of their index, which btrfs gives each new entry from a counter: an entry
      // in both trees has the same index and the same bytes.
      const ea = a0.inode >= 0 && isDir(a0.buf, a0.inode) ? a0.entries : NO_ENTRIES;
      const eb = isDir(inodes, atB) ? b.entries : NO_ENTRIES;
      if (ea.length > 0 || eb.length > 0) {
        const bufA = a0.buf;
        const bufB = b.buf;
        const oldDir = ea.length > 0 ? oldSide.dirPath(objectid) : '';
        const newDir = eb.length > 0 ? newSide.dirPath(objectid) : '';
        // Whether this directory is at the same path in the old tree: asked once, when a new inode came.
        let stays: boolean | undefined;
        const parentStays = (): boolean => (stays ??= same && oldSide.dirPath(objectid) === newDir);
        const removed = (i: number): void => {
          const at = ea[i + 1] as number;
          const f = found(oldDir + entryName(bufA, at));
          f.maybeDeleted = true;
          if (bufA[at + 8] === INODE_ITEM) f.oldIno = u64(bufA, at);
        };
        const added = (j: number): void => {
          const at = eb[j + 1] as number;
          const f = found(newDir + entryName(bufB, at));
          f.maybeAdded = true;
          const kind = bufB[at + 8];
          if (kind === INODE_ITEM) f.newIno = u64(bufB, at);
          // A new inode (not a nested subvolume's root): an entry of the new tree only.
          if (kind !== ROOT_ITEM) {
            const child = u64(bufB, at);
            const atChild = newInodes.get(child);
            if (atChild !== undefined && !inBoth(child)) {
              f.newInode = true;
              f.parent = newDir;
              f.parentStays = parentStays();
              f.dir = isDir(inodes, atChild);
            }
          }
        };
        if (!same) {
          // No old inode here (or another one, with this number): all it held left, all this holds came.
          for (let i = 0; i < ea.length; i += 3) removed(i);
          for (let j = 0; j < eb.length; j += 3) added(j);
        } else {
          mergeByKey(ea, eb, (i, j) => {
            const atA = ea[i + 1] as number;
            const atE = eb[j + 1] as number;
            const lenA = ea[i + 2] as number;
            if (lenA !== eb[j + 2] || bufA.compare(bufB, atE, atE + lenA, atA, atA + lenA) !== 0) {
              removed(i);
              added(j);
            }
          }, removed, added);
        }
      }
      const atA = a0.inode;
      if (!same || atA < 0) continue;
      // The inode's own changes, at each name it has in both trees.
      const attrs = a0.buf.compare(inodes, atB + 44, atB + 64, atA + 44, atA + 64) !== 0;
      // xattrs by name and value (a dir_item also holds the transaction that wrote it).
      const xattrs = rawDiffer(a0, b, a0.xattrs, b.xattrs) && mapsDiffer(xattrsOf(a0), xattrsOf(b));
      const dir = isDir(inodes, atB);
      const ranges = dir ? [] : changedRanges(a0, b);
      const content = !dir && (u64(a0.buf, atA + 16) !== u64(inodes, atB + 16) || ranges === null || ranges.length > 0);
      if (!attrs && !xattrs && !content) continue;
      const oldNames = new Set(refsOf(a0).map((r) => oldSide.pathOf(r.parent, r.name)));
      const newNames = objectid === FIRST_FREE ? [''] : refsOf(b).map((r) => newSide.pathOf(r.parent, r.name));
      namesOf.set(objectid, newNames);
      const known = { a: metaOf(objectid, a0.buf, atA), b: metaOf(objectid, inodes, atB) };
      for (const path of newNames) {
        if (!(objectid === FIRST_FREE || oldNames.has(path))) continue;
        const f = found(path);
        f.attrs ||= attrs;
        f.xattrs ||= xattrs;
        if (content) {
          f.content = true;
          f.ranges = ranges;
        }
        f.stayed = known;
      }
    }
    // Where one inode took another's path, verification compares everything; the xattrs of
    // both are read here, from their items, where it would run getfattr on the two paths.
    const swaps: Found[] = [];
    for (const f of out.values()) if (f.maybeAdded && f.maybeDeleted && f.oldIno >= 0 && f.newIno >= 0) swaps.push(f);
    if (swaps.length > 0) {
      const oldX = new Map<number, Items>();
      const newX = new Map<number, Items>();
      readObjects(reader, budget, oldSide, [...new Set(swaps.map((f) => f.oldIno))].sort((x, y) => x - y), oldX, [XATTR_ITEM]);
      readObjects(reader, budget, newSide, [...new Set(swaps.map((f) => f.newIno))].sort((x, y) => x - y), newX, [XATTR_ITEM]);
      for (const f of swaps) f.replacedXattrs = mapsDiffer(xattrsOf(oldX.get(f.oldIno) ?? NO_ITEMS), xattrsOf(newX.get(f.newIno) ?? NO_ITEMS)) ? 'differ' : 'same';
    }
    // In path order: latin1 strings compare as their bytes do.
    const keys = [...out.keys()].sort();
    // A new inode added where the old tree had nothing is decided without a look at either
    // tree (Candidate.sure): in a directory at the same path in both trees, whose entries
    // were compared (a name it held in the old tree is a removal at this path too), or in a
    // new directory that is itself such an addition (its parents come first in path order).
    /** Such new directories, with a trailing '/'. */
    const absent = new Set<string>();
    const candidates = keys.map((k) => {
      const f = out.get(k) as Found;
      const sure = f.newInode && !f.maybeDeleted && (f.parentStays || absent.has(f.parent));
      if (sure && f.dir) absent.add(`${k}/`);
      return f.candidate(k, sure);
    });
    // Verification asks for the other names of a changed file with several links; they are
    // all candidates already, from the file's own items.
    const inodePaths: InodePathResolver = (_root, ino) => {
      const names = namesOf.get(ino);
      return names ? Promise.resolve(names.map((n) => Buffer.from(n, 'latin1'))) : Promise.reject(new Error(`inode ${ino} is not one the tree comparison read`));
    };
    return { candidates, inodePaths };
  } finally {
    oldSide.close();
    newSide.close();
  }
}
