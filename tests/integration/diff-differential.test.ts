/**
 * The send-stream diff checked against its slow twin (the full walk) and against an
 * in-memory model of the tree, on a real btrfs filesystem: random trees, random change
 * sets (fast-check), plus explicit scenarios (research/machine.md §4's change list,
 * nested subvolumes, fallbacks).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  closeSync,
  constants as fsc,
  linkSync,
  lchownSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readdirSync,
  renameSync,
  rmdirSync,
  symlinkSync,
  chmodSync,
  truncateSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
  appendFileSync,
  writeSync,
} from 'node:fs';
import { isUtf8 } from 'node:buffer';
import { PassThrough, Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { renderDiffText, type ChangeKind, type DiffEntry } from '../../src/core/diff.js';
import { diffTrees, walkDiff, type InodePathResolver } from '../../src/storage/diff/index.js';
import { replayCommands } from '../../src/storage/diff/replay.js';
import { readXattrs } from '../../src/storage/diff/verify.js';
import { parseSendStream, type SendCommand } from '../../src/storage/sendstream.js';
import { isRoot, makeTestPool, type TestPool } from '../helpers/pool.js';
import { BtrfsDriver } from '../../src/storage/btrfs.js';
import { btrfsIoctl } from '../../src/storage/btrfs-ioctl.js';

const driver = new BtrfsDriver();

const skip = isRoot() ? false : 'needs root (btrfs)';
let pool: TestPool;
let counter = 0;

before(() => {
  if (!skip) pool = makeTestPool(1024);
});
after(() => pool?.cleanup());

// ---------------------------------------------------------------------------------------
// btrfs helpers (tests call btrfs directly; the driver is someone else's)

function btrfs(...args: string[]): void {
  execFileSync('btrfs', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** The driver's `btrfs send --no-data -p parent child`, a Readable that errors when send fails. */
function sendStream(parent: string, child: string): () => Readable {
  return () => driver.sendNoData(parent, child);
}

/** `btrfs inspect-internal inode-resolve`: one path per line, raw bytes (a name with '\n' spans lines). */
const inodePaths: InodePathResolver = async (root, ino) => {
  const stdout = execFileSync('btrfs', ['inspect-internal', 'inode-resolve', String(ino), root]);
  const prefix = Buffer.from(`${root}/`);
  const lines: Buffer[] = [];
  let start = 0;
  for (let i = stdout.indexOf(0x0a); i >= 0; start = i + 1, i = stdout.indexOf(0x0a, start)) lines.push(stdout.subarray(start, i));
  const out: Buffer[] = [];
  const exists = (p: Buffer): boolean => lstatSync(Buffer.concat([prefix, p]), { throwIfNoEntry: false }) !== undefined;
  for (let i = 0; i < lines.length; i++) {
    let p = (lines[i] ?? Buffer.alloc(0)).subarray(prefix.length);
    while (!exists(p) && i + 1 < lines.length) p = Buffer.concat([p, Buffer.of(0x0a), lines[++i] ?? Buffer.alloc(0)]);
    out.push(p);
  }
  return out;
};

function freshName(prefix: string): string {
  counter += 1;
  return `${pool.mnt}/${prefix}-${process.pid}-${counter}`;
}

const LIST_ALL = { keepNew: 0, dropEmptied: 1 };

const treeReader = btrfsIoctl()?.treeReader;

/**
 * Diffs old → new every way (the trees' own items, the send, the walk), asserts they
 * agree, returns the rendered text.
 */
async function diffBoth(oldSnap: string, newSnap: string, expectMethod: 'send' | 'walk' = 'send'): Promise<string> {
  assert.ok(treeReader, 'the addon is built (npm run build)');
  // Large directories' entries compared too (by default the send takes those).
  const tree = await diffTrees({ oldRoot: oldSnap, newRoot: newSnap, treeReader, treeOptions: { readLargeDirectories: true }, onFallback: (e) => console.log('tree fallback:', e) });
  assert.equal(tree.method, 'tree');
  const fast = await diffTrees({ oldRoot: oldSnap, newRoot: newSnap, sendStream: sendStream(oldSnap, newSnap), inodePaths, onFallback: (e) => console.log('fallback:', e) });
  const slow = await walkDiff(oldSnap, newSnap);
  if (process.env.DIFF_DEBUG === '1') {
    // DIFF_DEBUG=1: the stream's commands (paths as latin1) and both answers, on stderr.
    for await (const c of parseSendStream(driver.sendNoData(oldSnap, newSnap))) console.error(JSON.stringify(c, (k, v) => (v && v.type === 'Buffer' ? Buffer.from(v.data).toString('latin1') : v)));
    console.error('FAST', renderDiffText(fast.entries));
    console.error('SLOW', renderDiffText(slow));
  }
  assert.equal(fast.method, expectMethod);
  assert.equal(renderDiffText(tree.entries), renderDiffText(slow), 'tree comparison and walk disagree');
  assert.deepEqual(tree.entries, slow);
  assert.equal(renderDiffText(fast.entries), renderDiffText(slow), 'send path and walk disagree');
  assert.deepEqual(fast.entries, slow);
  // Again with new and removed trees listed whenever they can be (the limits a million
  // paths reach), so the small trees of these tests take that path too.
  const listed = await diffTrees({ oldRoot: oldSnap, newRoot: newSnap, sendStream: sendStream(oldSnap, newSnap), inodePaths, replayLimits: LIST_ALL });
  assert.equal(listed.method, expectMethod);
  assert.equal(renderDiffText(listed.entries), renderDiffText(slow), 'send path (trees listed) and walk disagree');
  return renderDiffText(slow);
}

// ---------------------------------------------------------------------------------------
// File helpers with raw-byte paths

const abs = (root: string, rel: string): Buffer => Buffer.concat([Buffer.from(`${root}/`), Buffer.from(rel, 'latin1')]);

/** rm -rf that keeps names as bytes (fs.rmSync turns Buffer paths into strings). */
function rmTree(path: Buffer): void {
  const st = lstatSync(path);
  if (st.isDirectory()) {
    for (const name of readdirSync(path, { encoding: 'buffer' })) rmTree(Buffer.concat([path, Buffer.from('/'), name]));
    rmdirSync(path);
  } else unlinkSync(path);
}

/** setfattr/-x through /proc/<pid>/fd/<n>: argv cannot carry names that are not UTF-8. */
function setXattr(path: Buffer, name: string, value: string | null): void {
  const fd = openSync(path, 0o10000000 | fsc.O_NOFOLLOW);
  try {
    const args = value === null ? ['-x', name] : ['-n', name, '-v', value];
    execFileSync('setfattr', [...args, `/proc/${process.pid}/fd/${fd}`]);
  } finally {
    closeSync(fd);
  }
}

function mkfifoAt(root: string, path: Buffer, mode: number): void {
  const tmp = `${root}/.tmp-fifo`;
  execFileSync('mkfifo', ['-m', mode.toString(8), tmp]);
  renameSync(tmp, path);
}

// ---------------------------------------------------------------------------------------
// The model: what each path holds; hard links share one Inode object.

type Kind = 'file' | 'dir' | 'symlink' | 'fifo';
interface Inode {
  kind: Kind;
  mode: number;
  uid: number;
  gid: number;
  content: Buffer;
  target: Buffer;
  xattr: string | null;
}
type Model = Map<string, Inode>; // latin1 of the relative path's bytes → inode

function cloneModel(m: Model): Model {
  const copies = new Map<Inode, Inode>();
  return new Map(
    [...m].map(([k, ino]) => {
      let c = copies.get(ino);
      if (!c) copies.set(ino, (c = { ...ino }));
      return [k, c];
    }),
  );
}

function modelDiff(before: Model, afterM: Model): DiffEntry[] {
  const out: DiffEntry[] = [];
  const push = (k: string, kind: ChangeKind): void => {
    out.push({ path: Buffer.from(`/${k}`, 'latin1'), kind });
  };
  for (const [k, o] of before) {
    const n = afterM.get(k);
    if (!n) push(k, 'deleted');
    else if (
      o.kind !== n.kind ||
      o.mode !== n.mode ||
      o.uid !== n.uid ||
      o.gid !== n.gid ||
      o.xattr !== n.xattr ||
      (o.kind === 'symlink' && !o.target.equals(n.target)) ||
      (o.kind === 'file' && !o.content.equals(n.content))
    ) {
      push(k, 'modified');
    }
  }
  for (const k of afterM.keys()) if (!before.has(k)) push(k, 'added');
  return out;
}

const L = (s: string | number[]): string => (typeof s === 'string' ? Buffer.from(s, 'utf8') : Buffer.from(s)).toString('latin1');
const NAMES = [L('a'), L('b'), L('c.txt'), L('sp ace'), L('é'), L([0xff, 0xfe]), L('x\\y'), L('nl\nx'), L([0x66, 0x80]), L('o12-3-0'), L('deep')];
const CONTENTS = ['', 'hello', 'hellO', 'x'.repeat(5000), 'y'.repeat(5000), 'z'.repeat(70_000), 'ab'.repeat(150_000)].map((s) => Buffer.from(s));
const FILE_MODES = [0o644, 0o600, 0o755, 0o4755, 0o2644];
const DIR_MODES = [0o755, 0o700, 0o1777];
const OWNERS: [number, number][] = [
  [0, 0],
  [1000, 1000],
  [0, 1234],
];
const XATTRS = [null, 'v1', 'v2'];
const TARGETS = ['/etc/hosts', 'a', '../b', 'nl\nt'].map((s) => Buffer.from(s));

const CREATE_OPS = ['mkfile', 'mkfile', 'mkdir', 'mkdir', 'mkdir', 'symlink', 'fifo', 'link', 'chmod', 'chown', 'xattr'] as const;
const CHANGE_OPS = [
  'mkfile', 'mkdir', 'symlink', 'fifo', 'link', 'write', 'rewriteSame', 'replaceSame', 'truncate', 'chmod', 'chown',
  'xattr', 'retarget', 'typeChange', 'rename', 'remove', 'touch',
  // The send path's shortcuts: xattrs trusted from the stream, bytes compared only in the
  // ranges whose extents changed (reflinks share extents, patches touch a few blocks).
  'xattrSetRemove', 'xattrSame', 'reflink', 'reflinkOver', 'patch', 'patchSame',
] as const;
type OpName = (typeof CREATE_OPS)[number] | (typeof CHANGE_OPS)[number];
interface Op {
  t: OpName;
  a: number;
  b: number;
  c: number;
}

const pick = <T>(list: readonly T[], n: number): T | undefined => (list.length === 0 ? undefined : list[n % list.length]);
const join = (dir: string, name: string): string => (dir === '' ? name : `${dir}/${name}`);
const inSubtree = (k: string, top: string): boolean => k === top || k.startsWith(`${top}/`);

class World {
  readonly model: Model = new Map();
  constructor(readonly root: string) {}

  private keys(kind?: Kind): string[] {
    return [...this.model].filter(([, i]) => kind === undefined || i.kind === kind).map(([k]) => k);
  }
  private dirs(): string[] {
    return ['', ...this.keys('dir')];
  }
  private p(k: string): Buffer {
    return abs(this.root, k);
  }

  private create(k: string, kind: Kind, n: number): void {
    const path = this.p(k);
    const inode: Inode = { kind, mode: 0, uid: 0, gid: 0, content: Buffer.alloc(0), target: Buffer.alloc(0), xattr: null };
    if (kind === 'file') {
      inode.content = pick(CONTENTS, n) ?? Buffer.alloc(0);
      inode.mode = 0o644;
      writeFileSync(path, inode.content);
      chmodSync(path, inode.mode);
    } else if (kind === 'dir') {
      inode.mode = 0o755;
      mkdirSync(path);
      chmodSync(path, inode.mode);
    } else if (kind === 'symlink') {
      inode.target = pick(TARGETS, n) ?? Buffer.from('x');
      inode.mode = 0o777;
      symlinkSync(inode.target, path);
    } else {
      inode.mode = 0o644;
      mkfifoAt(this.root, path, inode.mode);
    }
    this.model.set(k, inode);
  }

  private removeKey(k: string): void {
    rmTree(this.p(k));
    for (const key of [...this.model.keys()]) if (inSubtree(key, k)) this.model.delete(key);
  }

  /** Applies one op to the filesystem and the model; ops that do not apply are skipped. */
  apply(op: Op): void {
    const { a, b, c } = op;
    const newKey = (): string | undefined => {
      const dir = pick(this.dirs(), a);
      const name = pick(NAMES, b);
      if (dir === undefined || name === undefined) return undefined;
      const k = join(dir, name);
      return this.model.has(k) ? undefined : k;
    };
    switch (op.t) {
      case 'mkfile':
      case 'mkdir':
      case 'symlink':
      case 'fifo': {
        const k = newKey();
        if (k !== undefined) this.create(k, op.t === 'mkfile' ? 'file' : op.t === 'mkdir' ? 'dir' : op.t, c);
        return;
      }
      case 'link': {
        const src = pick(this.keys('file'), c);
        const k = newKey();
        if (src === undefined || k === undefined) return;
        linkSync(this.p(src), this.p(k));
        this.model.set(k, this.model.get(src) as Inode);
        return;
      }
      case 'write':
      case 'rewriteSame': {
        const k = pick(this.keys('file'), a);
        if (k === undefined) return;
        const inode = this.model.get(k) as Inode;
        if (op.t === 'write') inode.content = pick(CONTENTS, b) ?? Buffer.alloc(0);
        writeFileSync(this.p(k), inode.content);
        return;
      }
      case 'replaceSame': {
        // A new inode with the same content, mode and owner (its xattrs are gone).
        const k = pick(this.keys('file'), a);
        if (k === undefined) return;
        const old = this.model.get(k) as Inode;
        const path = this.p(k);
        unlinkSync(path);
        writeFileSync(path, old.content);
        lchownSync(path, old.uid, old.gid);
        chmodSync(path, old.mode);
        this.model.set(k, { ...old, xattr: null });
        return;
      }
      case 'truncate': {
        const k = pick(this.keys('file'), a);
        if (k === undefined) return;
        const size = pick([0, 3, 100], b) ?? 0;
        truncateSync(this.p(k), size);
        const inode = this.model.get(k) as Inode;
        const content = Buffer.alloc(size);
        inode.content.copy(content, 0, 0, Math.min(size, inode.content.length));
        inode.content = content;
        return;
      }
      case 'chmod': {
        const k = pick([...this.keys('file'), ...this.keys('dir'), ...this.keys('fifo')], a);
        if (k === undefined) return;
        const inode = this.model.get(k) as Inode;
        inode.mode = pick(inode.kind === 'dir' ? DIR_MODES : FILE_MODES, b) ?? 0o644;
        chmodSync(this.p(k), inode.mode);
        return;
      }
      case 'chown': {
        const k = pick(this.keys(), a);
        if (k === undefined) return;
        const inode = this.model.get(k) as Inode;
        [inode.uid, inode.gid] = pick(OWNERS, b) ?? [0, 0];
        lchownSync(this.p(k), inode.uid, inode.gid);
        // chown clears setuid (and setgid with group-exec) on non-directories.
        inode.mode = lstatSync(this.p(k)).mode & 0o7777;
        return;
      }
      case 'xattr': {
        const k = pick([...this.keys('file'), ...this.keys('dir')], a);
        if (k === undefined) return;
        const inode = this.model.get(k) as Inode;
        const value = pick(XATTRS, b) ?? null;
        if (value === null && inode.xattr === null) return;
        setXattr(this.p(k), 'user.x', value);
        inode.xattr = value;
        return;
      }
      case 'retarget': {
        const k = pick(this.keys('symlink'), a);
        if (k === undefined) return;
        const target = pick(TARGETS, b) ?? Buffer.from('x');
        unlinkSync(this.p(k));
        symlinkSync(target, this.p(k));
        this.model.set(k, { kind: 'symlink', mode: 0o777, uid: 0, gid: 0, content: Buffer.alloc(0), target, xattr: null });
        return;
      }
      case 'typeChange': {
        const k = pick(this.keys(), a);
        if (k === undefined) return;
        const from = (this.model.get(k) as Inode).kind;
        const to = pick((['file', 'dir', 'symlink'] as const).filter((x) => x !== from), b) ?? 'file';
        this.removeKey(k);
        this.create(k, to, c);
        return;
      }
      case 'rename': {
        const src = pick(this.keys(), c);
        const dst = newKey();
        if (src === undefined || dst === undefined || inSubtree(dst, src)) return;
        renameSync(this.p(src), this.p(dst));
        for (const [key, inode] of [...this.model]) {
          if (!inSubtree(key, src)) continue;
          this.model.delete(key);
          this.model.set(dst + key.slice(src.length), inode);
        }
        return;
      }
      case 'remove': {
        const k = pick(this.keys(), a);
        if (k !== undefined) this.removeKey(k);
        return;
      }
      case 'xattrSetRemove': {
        // Set, then removed again: nothing changed.
        const k = pick([...this.keys('file'), ...this.keys('dir')], a);
        if (k === undefined || (this.model.get(k) as Inode).xattr !== null) return;
        setXattr(this.p(k), 'user.x', 'tmp');
        setXattr(this.p(k), 'user.x', null);
        return;
      }
      case 'xattrSame': {
        const k = pick([...this.keys('file'), ...this.keys('dir')], a);
        const inode = k === undefined ? undefined : this.model.get(k);
        if (k === undefined || inode?.xattr === null || inode === undefined) return;
        setXattr(this.p(k), 'user.x', inode.xattr);
        return;
      }
      case 'reflink':
      case 'reflinkOver': {
        // cp --reflink: a new file sharing the source's extents, or an existing inode
        // truncated and cloned into (its mode, owner and xattrs stay).
        const src = pick(this.keys('file'), c);
        const dst = op.t === 'reflink' ? newKey() : pick(this.keys('file'), a);
        if (src === undefined || dst === undefined || this.model.get(src) === this.model.get(dst)) return;
        if (!isUtf8(this.p(src)) || !isUtf8(this.p(dst))) return; // argv cannot carry them
        execFileSync('cp', ['--reflink=always', this.p(src).toString(), this.p(dst).toString()]);
        const from = this.model.get(src) as Inode;
        if (op.t === 'reflink') {
          this.model.set(dst, { kind: 'file', mode: lstatSync(this.p(dst)).mode & 0o7777, uid: 0, gid: 0, content: Buffer.from(from.content), target: Buffer.alloc(0), xattr: null });
        } else (this.model.get(dst) as Inode).content = Buffer.from(from.content);
        return;
      }
      case 'patch':
      case 'patchSame': {
        // A few bytes rewritten in place, different or the same as before.
        const k = pick(this.keys('file'), a);
        const inode = k === undefined ? undefined : this.model.get(k);
        if (k === undefined || inode === undefined || inode.content.length === 0) return;
        const at = (b * 7919) % inode.content.length;
        const bytes = Buffer.from(inode.content.subarray(at, at + 3));
        if (op.t === 'patch') bytes.fill(0x41 + (c % 26));
        const fd = openSync(this.p(k), fsc.O_WRONLY);
        try {
          writeSync(fd, bytes, 0, bytes.length, at);
        } finally {
          closeSync(fd);
        }
        inode.content = Buffer.from(inode.content); // the snapshot's model shares the old Buffer
        bytes.copy(inode.content, at);
        return;
      }
      case 'touch': {
        const k = pick(this.keys(), a);
        if (k === undefined) return;
        const when = new Date(Date.UTC(2001, 0, 1 + (b % 300)));
        if (this.model.get(k)?.kind === 'symlink') lutimesSync(this.p(k), when, when);
        else utimesSync(this.p(k), when, when);
        return;
      }
    }
  }

  /** A nested subvolume with a file in it, in an existing directory; it never shows in a diff. */
  nestedSubvolume(n: number): string | undefined {
    const dir = pick(this.dirs(), n);
    if (dir === undefined) return undefined;
    const k = join(dir, `nested-${n}`);
    const path = this.p(k);
    if (this.model.has(k) || !isUtf8(path)) return undefined;
    btrfs('subvolume', 'create', path.toString());
    writeFileSync(Buffer.concat([path, Buffer.from('/inside')]), 'x');
    return path.toString();
  }
}

const opArb = (names: readonly OpName[]): fc.Arbitrary<Op> =>
  fc.record({ t: fc.constantFrom(...names), a: fc.nat(1000), b: fc.nat(1000), c: fc.nat(1000) });

/** DIFF_RUNS=500 for a longer soak; the default keeps the file well under a minute. */
const RUNS = Number(process.env.DIFF_RUNS ?? 35);

/** Builds the old tree from `initial`, applies `changes`, and checks both diff paths against the model. */
/** Files no change touches, made after the first tree: a btree of many leaves, most of them unchanged (PAD_FILES). */
const PAD_FILES = 1200;

async function checkCase(initial: readonly Op[], changes: readonly Op[], nested: number | null, padded = false): Promise<void> {
  const box = freshName('box');
  const oldSnap = `${box}.old`;
  const newSnap = `${box}.new`;
  const nestedPaths: string[] = [];
  btrfs('subvolume', 'create', box);
  try {
    const world = new World(box);
    for (const op of initial) world.apply(op);
    // Outside the model: the same on both sides, so neither diff nor model lists them.
    if (padded) for (let i = 0; i < PAD_FILES; i++) writeFileSync(`${box}/pad-${String(i).padStart(4, '0')}`, `padding ${i}\n`);
    btrfs('subvolume', 'snapshot', '-r', box, oldSnap);
    const before = cloneModel(world.model);
    for (const op of changes) world.apply(op);
    if (nested !== null) {
      const p = world.nestedSubvolume(nested);
      if (p) nestedPaths.push(p);
    }
    btrfs('subvolume', 'snapshot', '-r', box, newSnap);
    const got = await diffBoth(oldSnap, newSnap);
    assert.equal(got, renderDiffText(modelDiff(before, world.model)), 'diff differs from the model');
  } finally {
    for (const p of nestedPaths) btrfs('subvolume', 'delete', p);
    for (const p of [newSnap, oldSnap, box]) {
      if (lstatSync(p, { throwIfNoEntry: false })) btrfs('subvolume', 'delete', p);
    }
  }
}

test('send path == walk == model on random trees and random changes', { skip, timeout: 600_000 }, async () => {
  const started = Date.now();
  await fc.assert(
    fc.asyncProperty(
      fc.array(opArb(CREATE_OPS), { minLength: 5, maxLength: 40 }),
      fc.array(opArb(CHANGE_OPS), { minLength: 1, maxLength: 25 }),
      fc.option(fc.nat(1000), { freq: 3 }),
      // Half the trees span many leaves, so the tree comparison skips the unchanged ones.
      fc.boolean(),
      checkCase,
    ),
    // DIFF_SEED=n replays a run; DIFF_NO_SHRINK=1 reports the first failure as found;
    // DIFF_DEBUG=1 prints what diffBoth saw.
    { numRuns: RUNS, ...(process.env.DIFF_SEED ? { seed: Number(process.env.DIFF_SEED) } : {}), endOnFailure: process.env.DIFF_NO_SHRINK === '1' },
  );
  console.log(`${RUNS} random runs in ${Date.now() - started} ms`);
});

const ops = (t: OpName, list: [number, number, number][]): Op[] => list.map(([a, b, c]) => ({ t, a, b, c }));
const seq = (...parts: Op[][]): Op[] => parts.flat();

// Counterexamples the property once found, kept so they run every time.
test('regression: an entry renamed from one directory into a sibling, then its old directory removed', { skip }, async () => {
  const initial = seq(
    ops('mkdir', [[0, 287, 0], [0, 13, 0]]),
    ops('mkfile', [[124, 0, 0], [0, 124, 0], [869, 0, 0], [57, 0, 0]]),
    ops('mkdir', [[901, 24, 0]]),
    ops('mkfile', [[0, 0, 0], [0, 0, 0]]),
  );
  const changes = seq(
    ops('mkfile', [[0, 92, 0], [329, 1, 0], [3, 0, 0]]),
    ops('remove', [[956, 0, 0]]),
    ops('rename', [[256, 651, 201]]),
    ops('mkfile', [[0, 0, 0]]),
  );
  await checkCase(initial, changes, null);
});

test('regression: a hard-linked file patched after one of its names was renamed', { skip }, async () => {
  const initial = seq(
    ops('mkfile', [[0, 0, 0]]),
    ops('mkdir', [[0, 3, 0]]),
    ops('mkfile', [[0, 507, 64]]),
    ops('mkdir', [[0, 90, 0], [0, 642, 0]]),
    ops('mkfile', [[0, 335, 0], [0, 0, 0], [0, 0, 0]]),
    ops('mkdir', [[0, 644, 0]]),
    ops('link', [[36, 0, 4]]),
  );
  const changes = seq(ops('rename', [[112, 0, 1]]), ops('patch', [[327, 0, 0]]));
  await checkCase(initial, changes, null);
});

// ---------------------------------------------------------------------------------------
// research/machine.md §4's change list, on a small stand-in rootfs

function writeTree(root: string, files: Record<string, string>): void {
  for (const [rel, content] of Object.entries(files)) {
    const path = `${root}/${rel}`;
    mkdirSync(path.slice(0, path.lastIndexOf('/')), { recursive: true });
    if (rel.endsWith('/')) continue;
    writeFileSync(path, content);
  }
}

test('the machine.md §4 change list, two rounds', { skip }, async () => {
  const box = freshName('box1');
  const snaps = [0, 1, 2].map((i) => `${box}@${i}`);
  btrfs('subvolume', 'create', box);
  try {
    const man: Record<string, string> = {};
    for (let s = 1; s <= 8; s++) for (let f = 0; f < 5; f++) man[`usr/share/man/man${s}/page${f}.${s}.gz`] = `page ${s} ${f}`;
    writeTree(box, {
      'etc/hostname': 'box1\n',
      'etc/motd': 'welcome\n'.repeat(40),
      'etc/issue.net': 'Debian\n',
      'etc/debian_version': '12.5\n',
      'etc/shells': '/bin/sh\n',
      'etc/host.conf': 'multi on\n',
      'etc/hosts': '127.0.0.1 localhost\n',
      'etc/passwd': 'root:x:0:0::/root:/bin/sh\n',
      'srv/': '',
      'root/': '',
      'opt/': '',
      'usr/share/doc/bash/README': 'bash',
      'usr/share/doc/bash/copyright': 'GPL',
      'usr/share/doc/coreutils/copyright': 'GPL',
      ...man,
    });
    btrfs('subvolume', 'snapshot', '-r', box, snaps[0] as string);

    const at = (rel: string): string => `${box}/${rel}`;
    writeFileSync(at('root/newfile.txt'), 'new\n');
    appendFileSync(at('etc/hostname'), 'more\n');
    writeFileSync(at('root/big.bin'), Buffer.alloc(3 * 1024 * 1024, 7));
    truncateSync(at('etc/motd'), 100);
    renameSync(at('etc/issue.net'), at('etc/issue.net.renamed'));
    unlinkSync(at('etc/debian_version'));
    rmdirSync(at('srv'));
    mkdirSync(at('opt/newdir/sub'), { recursive: true });
    chmodSync(at('etc/shells'), 0o600);
    lchownSync(at('root/newfile.txt'), 1000, 1000);
    utimesSync(at('etc/host.conf'), new Date('2001-01-01'), new Date('2001-01-01'));
    symlinkSync('/etc/hosts', at('root/link-to-hosts'));
    linkSync(at('etc/passwd'), at('root/passwd.hardlink'));
    execFileSync('mkfifo', [at('root/fifo')]);
    renameSync(at('usr/share/doc'), at('usr/share/doc-moved'));
    rmTree(Buffer.from(at('usr/share/man')));
    btrfs('subvolume', 'snapshot', '-r', box, snaps[1] as string);

    const round1 = await diffBoth(snaps[0] as string, snaps[1] as string);
    const docs = ['', '/bash', '/bash/README', '/bash/copyright', '/coreutils', '/coreutils/copyright'];
    const manLines = ['- /usr/share/man', ...Object.keys(man).flatMap((p) => [`- /${p}`, `- /${p.slice(0, p.lastIndexOf('/'))}`])];
    const expected1 = [
      '- /etc/debian_version',
      '~ /etc/hostname',
      '- /etc/issue.net',
      '+ /etc/issue.net.renamed',
      '~ /etc/motd',
      '~ /etc/shells',
      '+ /opt/newdir',
      '+ /opt/newdir/sub',
      '+ /root/big.bin',
      '+ /root/fifo',
      '+ /root/link-to-hosts',
      '+ /root/newfile.txt',
      '+ /root/passwd.hardlink',
      '- /srv',
      ...docs.map((d) => `- /usr/share/doc${d}`),
      ...docs.map((d) => `+ /usr/share/doc-moved${d}`),
      ...manLines,
    ];
    const sortLines = (lines: string[]): string[] => [...new Set(lines)].sort((x, y) => Buffer.compare(Buffer.from(x.slice(2)), Buffer.from(y.slice(2))));
    assert.equal(round1, sortLines(expected1).join('\n'));
    assert.ok(!round1.includes('host.conf'), 'a touch alone is not a change');
    assert.ok(!round1.includes('/etc/passwd'), 'a new hard link does not modify the other name');

    // Round 2: xattr, append, a 1-byte write in the middle of big.bin, rm fifo; plus a
    // content change of a file with two hard links (both names must show).
    setXattr(Buffer.from(at('etc/hostname')), 'user.box', 'hello');
    appendFileSync(at('root/newfile.txt'), 'more\n');
    const fd = openSync(at('root/big.bin'), 'r+');
    writeSync(fd, Buffer.from([9]), 0, 1, 1_000_000);
    closeSync(fd);
    unlinkSync(at('root/fifo'));
    appendFileSync(at('etc/passwd'), 'bob:x:1000:1000::/home/bob:/bin/sh\n');
    btrfs('subvolume', 'snapshot', '-r', box, snaps[2] as string);
    const round2 = await diffBoth(snaps[1] as string, snaps[2] as string);
    assert.equal(
      round2,
      ['~ /etc/hostname', '~ /etc/passwd', '~ /root/big.bin', '- /root/fifo', '~ /root/newfile.txt', '~ /root/passwd.hardlink'].join('\n'),
    );

    // Without a way to resolve hard links, the same diff is done by the walk.
    const noResolver = await diffTrees({ oldRoot: snaps[1] as string, newRoot: snaps[2] as string, sendStream: sendStream(snaps[1] as string, snaps[2] as string) });
    assert.equal(noResolver.method, 'walk');
    assert.equal(renderDiffText(noResolver.entries), round2);
  } finally {
    for (const p of [...snaps, box]) if (lstatSync(p, { throwIfNoEntry: false })) btrfs('subvolume', 'delete', p);
  }
});

test('a new inode at an old path is compared in full, whatever the stream says', { skip }, async () => {
  const box = freshName('ident');
  const [oldSnap, newSnap] = [`${box}.old`, `${box}.new`];
  btrfs('subvolume', 'create', box);
  try {
    writeTree(box, { emptied: 'hello', xattr: 'same', same: 'same', over: 'old', mover: 'new', d: 'x', mode: 'm' });
    setXattr(Buffer.from(`${box}/xattr`), 'user.x', 'v');
    execFileSync('mknod', [`${box}/chr`, 'c', '1', '3']);
    execFileSync('mknod', [`${box}/chr-same`, 'c', '1', '3']);
    btrfs('subvolume', 'snapshot', '-r', box, oldSnap);
    const replace = (rel: string, content: string): void => {
      unlinkSync(`${box}/${rel}`);
      writeFileSync(`${box}/${rel}`, content);
    };
    replace('emptied', ''); // a new empty inode: no data commands in the stream
    replace('xattr', 'same'); // same bytes, but the new inode has no user.x (no remove_xattr sent)
    replace('same', 'same'); // identical in every way: not a change
    renameSync(`${box}/mover`, `${box}/over`); // rename over an existing file
    unlinkSync(`${box}/d`);
    mkdirSync(`${box}/d`); // file → dir
    replace('mode', 'm');
    chmodSync(`${box}/mode`, 0o600); // new inode, same bytes, other mode
    unlinkSync(`${box}/chr`);
    execFileSync('mknod', [`${box}/chr`, 'c', '1', '5']); // other device number
    unlinkSync(`${box}/chr-same`);
    execFileSync('mknod', [`${box}/chr-same`, 'c', '1', '3']); // the same device again
    btrfs('subvolume', 'snapshot', '-r', box, newSnap);
    const got = await diffBoth(oldSnap, newSnap);
    assert.equal(got, ['~ /chr', '~ /d', '~ /emptied', '~ /mode', '- /mover', '~ /over', '~ /xattr'].join('\n'));
  } finally {
    for (const p of [newSnap, oldSnap, box]) if (lstatSync(p, { throwIfNoEntry: false })) btrfs('subvolume', 'delete', p);
  }
});

test('trees made or removed by the stream come from its own entries; trees moved in or out are listed', { skip }, async () => {
  const box = freshName('trees');
  const [oldSnap, newSnap] = [`${box}.old`, `${box}.new`];
  btrfs('subvolume', 'create', box);
  try {
    writeTree(box, { 'gone/a/b/f': '1', 'gone/a/g': '2', 'gone/h': '3', 'moved/x/y': '4', 'moved/z': '5', 'kind/k/l': '6', 'keep/m': '7' });
    btrfs('subvolume', 'snapshot', '-r', box, oldSnap);
    rmTree(Buffer.from(`${box}/gone`)); // rmdir after rmdir: every old name is in the stream
    writeTree(box, { 'made/p/q/r': '8', 'made/p/s': '9', 'made/t': '10' }); // mkdir under mkdir
    renameSync(`${box}/moved`, `${box}/keep/moved`); // only the rename is in the stream
    rmTree(Buffer.from(`${box}/kind`));
    writeFileSync(`${box}/kind`, 'now a file'); // dir → file
    mkdirSync(`${box}/made/p/in`);
    renameSync(`${box}/keep/m`, `${box}/made/p/in/m`); // an old file moved into a new tree
    btrfs('subvolume', 'snapshot', '-r', box, newSnap);
    // The shortcut is taken: the stream marks the made and the emptied directories.
    const commands: SendCommand[] = [];
    for await (const c of parseSendStream(driver.sendNoData(oldSnap, newSnap))) commands.push(c);
    const flags = new Map(replayCommands(commands).map((c) => [c.path.toString(), c]));
    for (const dir of ['gone', 'gone/a', 'gone/a/b', 'kind/k']) assert.equal(flags.get(dir)?.emptiedDir, true, dir);
    for (const dir of ['made', 'made/p', 'made/p/q', 'made/p/in']) assert.equal(flags.get(dir)?.newInode, true, dir);
    assert.equal(flags.get('made')?.listNew, false); // a few new entries: each is a candidate
    assert.equal(flags.get('keep/moved')?.newInode, false);
    assert.equal(flags.get('moved')?.emptiedDir, false);
    // Made or removed by the stream alone: decided without a look at the trees.
    // (A file's rename is a link and an unlink in the stream: `keep/m` was unlinked.)
    for (const p of ['gone', 'gone/a/b/f', 'gone/h', 'made/p', 'made/p/q/r', 'made/p/in', 'keep/m']) assert.equal(flags.get(p)?.sure, true, p);
    // A name that came or went by a rename (into an old directory, where it may have
    // replaced an entry: `made`), an old inode's new name, and a path both emptied and
    // made anew, are looked at.
    for (const p of ['made', 'keep/moved', 'moved', 'kind', 'made/p/in/m']) assert.equal(flags.get(p)?.sure, false, p);
    // With the limits a million paths reach, the made tree is listed instead.
    const listed = new Map(replayCommands(commands, LIST_ALL).map((c) => [c.path.toString(), c]));
    assert.equal(listed.get('made')?.listNew, true);
    for (const p of ['made/p', 'made/p/q/r', 'made/p/in', 'made/p/in/m', 'made/t']) assert.equal(listed.has(p), false, p);
    const got = await diffBoth(oldSnap, newSnap);
    assert.equal(
      got,
      [
        '- /gone', '- /gone/a', '- /gone/a/b', '- /gone/a/b/f', '- /gone/a/g', '- /gone/h',
        '- /keep/m', '+ /keep/moved', '+ /keep/moved/x', '+ /keep/moved/x/y', '+ /keep/moved/z',
        '~ /kind', '- /kind/k', '- /kind/k/l',
        '+ /made', '+ /made/p', '+ /made/p/in', '+ /made/p/in/m', '+ /made/p/q', '+ /made/p/q/r', '+ /made/p/s', '+ /made/t',
        '- /moved', '- /moved/x', '- /moved/x/y', '- /moved/z',
      ].join('\n'),
    );
  } finally {
    for (const p of [newSnap, oldSnap, box]) if (lstatSync(p, { throwIfNoEntry: false })) btrfs('subvolume', 'delete', p);
  }
});

test('large trees made or removed by the stream are listed from their tree, and agree with the walk', { skip }, async () => {
  const LARGE = { keepNew: 100 }; // and the default 256 removed entries
  const box = freshName('large');
  const [oldSnap, newSnap] = [`${box}.old`, `${box}.new`];
  btrfs('subvolume', 'create', box);
  try {
    const files: Record<string, string> = { 'keep/k': 'k' };
    for (let i = 0; i < 300; i++) files[`gone/sub${i % 3}/f${i}`] = `${i}`;
    for (let i = 0; i < 40; i++) files[`gone/small/s${i}`] = `${i}`;
    files['gone/mover'] = 'moves out';
    for (let i = 0; i < 300; i++) files[`gone2/f${i}`] = `${i}`; // removed, and nothing in its place
    writeTree(box, files);
    btrfs('subvolume', 'snapshot', '-r', box, oldSnap);
    renameSync(`${box}/gone/mover`, `${box}/keep/mover`); // leaves the removed tree first
    rmTree(Buffer.from(`${box}/gone`));
    rmTree(Buffer.from(`${box}/gone2`));
    const made: Record<string, string> = {};
    for (let i = 0; i < 300; i++) made[`made/d${i % 4}/n${i}`] = `${i}`;
    writeTree(box, made);
    mkdirSync(`${box}/gone`); // a new directory where the removed one was
    writeFileSync(`${box}/gone/again`, 'new');
    btrfs('subvolume', 'snapshot', '-r', box, newSnap);
    const commands: SendCommand[] = [];
    for await (const c of parseSendStream(driver.sendNoData(oldSnap, newSnap))) commands.push(c);
    const flags = new Map(replayCommands(commands, LARGE).map((c) => [c.path.toString(), c]));
    // Neither tree's entries are candidates: the removed one lets go of what it removed,
    // the made one of what it made.
    assert.ok(flags.size < 20, [...flags.keys()].join(' '));
    assert.equal(flags.get('made')?.listNew, true);
    assert.equal(flags.has('gone/sub1/f1'), false);
    assert.equal(flags.has('gone2/f1'), false);
    assert.equal(flags.get('gone2')?.emptiedDir, false); // so its old subtree is listed
    assert.equal(flags.get('keep/mover')?.maybeAdded, true);
    const got = await diffBoth(oldSnap, newSnap);
    const lines = got.split('\n');
    assert.equal(lines.filter((l) => l.startsWith('- /gone/')).length, 300 + 3 + 40 + 1 + 1);
    assert.equal(lines.filter((l) => l.startsWith('+ /made/')).length, 300 + 4);
    assert.equal(lines.filter((l) => l.startsWith('- /gone2')).length, 301);
    assert.ok(lines.includes('+ /keep/mover') && lines.includes('+ /gone/again') && lines.includes('+ /made'), got.slice(0, 400));
  } finally {
    for (const p of [newSnap, oldSnap, box]) if (lstatSync(p, { throwIfNoEntry: false })) btrfs('subvolume', 'delete', p);
  }
});

test('readXattrs reads each path, whatever its name, without following symlinks', { skip }, async () => {
  const box = freshName('xattr');
  btrfs('subvolume', 'create', box);
  try {
    const names = ['plain', 'nl\nx', 'back\\slash\\012', 'cr\rx', 'tab\tx', 'é'].map((n) => Buffer.from(n));
    names.push(Buffer.from([0x66, 0xff, 0x0a]), Buffer.from('dir'), Buffer.from('link'), Buffer.from('bare'));
    const paths = names.map((n) => Buffer.concat([Buffer.from(`${box}/`), n]));
    paths.forEach((p, i) => {
      const n = names[i]?.toString() ?? '';
      if (n === 'dir') mkdirSync(p);
      else if (n === 'link') symlinkSync('plain', p);
      else writeFileSync(p, 'x');
      if (n === 'link') setXattr(p, 'trusted.t', 'on-the-link');
      else if (n !== 'bare') setXattr(p, 'user.k', `v${i}`);
    });
    const got = await readXattrs(paths);
    assert.deepEqual(
      got,
      names.map((n, i) => {
        const s = n.toString();
        if (s === 'bare') return '';
        if (s === 'link') return `trusted.t=0x${Buffer.from('on-the-link').toString('hex')}`;
        return `user.k=0x${Buffer.from(`v${i}`).toString('hex')}`;
      }),
    );
  } finally {
    btrfs('subvolume', 'delete', box);
  }
});

test('nested subvolumes are excluded the same way by both paths', { skip }, async () => {
  const box = freshName('nest');
  const [oldSnap, newSnap] = [`${box}.old`, `${box}.new`];
  btrfs('subvolume', 'create', box);
  try {
    writeTree(box, { 'keep/a': 'a', 'keep/b/c': 'c', 'f': 'f' });
    btrfs('subvolume', 'create', `${box}/sub1`);
    writeFileSync(`${box}/sub1/inside`, 'x');
    btrfs('subvolume', 'snapshot', '-r', box, oldSnap);

    // A new nested subvolume; the old one replaced by a plain directory; a plain
    // directory replaced by a nested subvolume.
    btrfs('subvolume', 'create', `${box}/sub2`);
    writeFileSync(`${box}/sub2/inside`, 'x');
    btrfs('subvolume', 'delete', `${box}/sub1`);
    writeTree(box, { 'sub1/file': 'now a plain dir' });
    rmTree(Buffer.from(`${box}/keep`));
    btrfs('subvolume', 'create', `${box}/keep`);
    writeFileSync(`${box}/keep/a`, 'a');
    btrfs('subvolume', 'snapshot', '-r', box, newSnap);

    const got = await diffBoth(oldSnap, newSnap);
    assert.equal(got, ['- /keep', '- /keep/a', '- /keep/b', '- /keep/b/c', '+ /sub1', '+ /sub1/file'].join('\n'));
  } finally {
    for (const p of [newSnap, oldSnap, `${box}/sub2`, `${box}/keep`, box]) {
      if (lstatSync(p, { throwIfNoEntry: false })) btrfs('subvolume', 'delete', p);
    }
  }
});

test('a broken or missing stream falls back to the walk; an abort does not', { skip }, async () => {
  const box = freshName('fb');
  const [oldSnap, newSnap] = [`${box}.old`, `${box}.new`];
  btrfs('subvolume', 'create', box);
  try {
    writeTree(box, { 'a/b': 'b', 'ÿ/x': 'x' });
    btrfs('subvolume', 'snapshot', '-r', box, oldSnap);
    writeFileSync(`${box}/a/b`, 'B');
    writeFileSync(`${box}/new`, 'n');
    btrfs('subvolume', 'snapshot', '-r', box, newSnap);
    const expected = '~ /a/b\n+ /new';
    const cases: (() => Readable)[] = [
      () => Readable.from([Buffer.from('this is not a send stream')]),
      () => sendStream(oldSnap, box)(), // send refuses a writable subvolume
      () => {
        throw new Error('cannot start send');
      },
    ];
    for (const open of cases) {
      const reasons: unknown[] = [];
      const res = await diffTrees({ oldRoot: oldSnap, newRoot: newSnap, sendStream: open, onFallback: (e) => reasons.push(e) });
      assert.equal(res.method, 'walk');
      assert.equal(reasons.length, 1);
      assert.equal(renderDiffText(res.entries), expected);
    }
    assert.equal(renderDiffText((await diffTrees({ oldRoot: oldSnap, newRoot: newSnap })).entries), expected);

    const ac = new AbortController();
    ac.abort();
    await assert.rejects(diffTrees({ oldRoot: oldSnap, newRoot: newSnap, sendStream: sendStream(oldSnap, newSnap), signal: ac.signal }), { name: 'AbortError' });
    const ac2 = new AbortController();
    const slow = new PassThrough();
    setTimeout(() => ac2.abort(), 20);
    await assert.rejects(diffTrees({ oldRoot: oldSnap, newRoot: newSnap, sendStream: () => slow, signal: ac2.signal }), { name: 'AbortError' });
  } finally {
    for (const p of [newSnap, oldSnap, box]) if (lstatSync(p, { throwIfNoEntry: false })) btrfs('subvolume', 'delete', p);
  }
});

test('the tree comparison follows snapshots of snapshots and refuses trees it cannot vouch for', { skip }, async () => {
  assert.ok(treeReader, 'the addon is built (npm run build)');
  const box = freshName('lineage');
  const made: string[] = [];
  const snap = (from: string, to: string, readOnly = true): string => {
    btrfs('subvolume', 'snapshot', ...(readOnly ? ['-r'] : []), from, to);
    made.push(to);
    return to;
  };
  /** The diff with the tree comparison only (else the walk), checked against the walk. */
  const viaTree = async (oldRoot: string, newRoot: string, expect: 'tree' | 'walk', treeOptions?: { budgetBytes?: number; readLargeDirectories?: boolean }): Promise<unknown[]> => {
    const reasons: unknown[] = [];
    const got = await diffTrees({ oldRoot, newRoot, treeReader, ...(treeOptions ? { treeOptions } : {}), onFallback: (e) => reasons.push(e) });
    assert.equal(got.method, expect, `method, after ${reasons.map(String).join('; ')}`);
    assert.equal(renderDiffText(got.entries), renderDiffText(await walkDiff(oldRoot, newRoot)));
    return reasons;
  };
  btrfs('subvolume', 'create', box);
  made.push(box);
  try {
    // Enough files for a tree of several levels: a snapshot of a snapshot copies only its
    // root block, which then holds no items.
    const files: Record<string, string> = {};
    for (let i = 0; i < 600; i++) files[`d${i % 7}/f${i}`] = `file ${i}\n`;
    writeTree(box, files);
    const old = snap(box, `${box}.old`);
    // Snapshots taken of the old tree rewrite its root block (as a restore's does).
    snap(old, `${box}.old-copy`);
    writeFileSync(`${box}/d1/f1`, 'changed\n');
    rmTree(Buffer.from(`${box}/d2`));
    renameSync(`${box}/d3`, `${box}/d3-moved`);
    writeTree(box, { 'd9/new': 'new\n' });
    const next = snap(box, `${box}.next`);
    await viaTree(old, next, 'tree');

    // A restore: a writable snapshot of the old tree, changed, then snapshotted.
    const restored = snap(old, `${box}.restored`, false);
    writeFileSync(`${restored}/d0/f0`, 'restored and changed\n');
    unlinkSync(`${restored}/d4/f4`);
    const afterRestore = snap(restored, `${box}.after-restore`);
    await viaTree(old, afterRestore, 'tree');

    // The other way round, and trees of other lines: the walk (no send given here).
    const reasons = await viaTree(next, old, 'walk');
    assert.match(String(reasons[0]), /does not descend/);
    await viaTree(next, afterRestore, 'walk');

    // An old tree changed after its creation (made writable, written, made read-only again).
    const changedOld = snap(box, `${box}.changed-old`);
    btrfs('property', 'set', changedOld, 'ro', 'false');
    writeFileSync(`${changedOld}/d5/f5`, 'written into the old tree\n');
    btrfs('property', 'set', changedOld, 'ro', 'true');
    writeFileSync(`${box}/d6/f6`, 'changed too\n');
    const later = snap(box, `${box}.later`);
    assert.match(String((await viaTree(changedOld, later, 'walk'))[0]), /changed after its creation|written after its creation/);

    // Directories below the roots: not subvolume roots, so left to the others.
    assert.match(String((await viaTree(`${old}/d1`, `${next}/d1`, 'walk'))[0]), /not the root of a subvolume/);

    // Past its budget, the comparison gives the diff up.
    assert.match(String((await viaTree(old, next, 'walk', { budgetBytes: 4096 }))[0]), /budget/);

    // A large directory that changed little is left to the send, unless asked.
    const big = snap(box, `${box}.big`);
    for (let i = 0; i < 3000; i++) writeFileSync(`${box}/d0/many-${i}`, '');
    const bigOld = snap(box, `${box}.big-old`);
    writeFileSync(`${box}/d0/one-more`, '1\n');
    const bigNew = snap(box, `${box}.big-new`);
    assert.match(String((await viaTree(bigOld, bigNew, 'walk'))[0]), /large directories/);
    await viaTree(bigOld, bigNew, 'tree', { budgetBytes: 1 << 30, readLargeDirectories: true });
    await viaTree(big, bigNew, 'tree');
  } finally {
    for (const p of made.reverse()) if (lstatSync(p, { throwIfNoEntry: false })) btrfs('subvolume', 'delete', p);
  }
});
