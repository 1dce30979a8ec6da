/**
 * The btrfs StorageDriver: the only code in zomg that runs the `btrfs` program or, through
 * btrfs-ioctl.ts, makes btrfs ioctls (a snapshot, a delete, `send --no-data`).
 *
 * Facts it relies on (measured on btrfs-progs 6.2, see research/machine.md §4):
 * - `subvolume snapshot` is not recursive: a nested subvolume shows up in the snapshot as
 *   an empty placeholder directory, so nested ones are snapshotted one by one into place.
 * - `subvolume delete` refuses a subvolume that still holds nested ones ("Directory not
 *   empty"), and unlinking a nested subvolume from a READ-ONLY parent fails with EROFS, so
 *   deletion clears `ro` on parents and goes deepest first.
 * - `subvolume list -o P` prints the direct children of the subvolume containing P with
 *   paths relative to the filesystem's top level (also when a non-top subvolume is the
 *   mount); /proc/self/mountinfo maps those paths to host paths.
 */
import { basename, dirname, join, relative, sep } from 'node:path';
import { fsPromises } from '../system/builtins.js';
import { PassThrough, Writable } from 'node:stream';
import type { Readable } from 'node:stream';
import { PoolFullError, ToolError, ZomgError } from '../core/errors.js';
import { isErrno, pathExists } from '../system/fs.js';
import { mountHolding } from '../system/mountinfo.js';
import { withReverter } from '../system/reverter.js';
import { CommandError, isNoSpace, run, runText } from '../system/run.js';
import { btrfsIoctl, IoctlError } from './btrfs-ioctl.js';
import type { DriverCapabilities, SnapshotOptions, StorageDriver } from './driver.js';
import type { TreeReader } from './diff/tree.js';

/** statfs f_type of a btrfs filesystem. */
export const BTRFS_SUPER_MAGIC = 0x9123683e;
/** The inode number of every subvolume's root directory (BTRFS_FIRST_FREE_OBJECTID). */
const SUBVOLUME_ROOT_INO = 256;

// Reasons worth showing a user; btrfs's own message names host paths, so it stays in `cause`.
const REASONS = [
  'Read-only file system',
  'Directory not empty',
  'File exists',
  'already exists',
  'No such file or directory',
  'Not a Btrfs subvolume',
  'not a btrfs filesystem',
  'is not read-only',
  'Permission denied',
  'Operation not permitted',
  'Device or resource busy',
  'Invalid argument',
];

// The same reasons for the in-process ioctls (btrfs-ioctl.ts), by errno name.
const IOCTL_REASONS: Record<string, string> = {
  EROFS: 'read-only file system',
  ENOTEMPTY: 'directory not empty',
  EEXIST: 'file exists',
  ENOENT: 'no such file or directory',
  ENOTSUBVOL: 'not a btrfs subvolume',
  ENOTDIR: 'not a directory',
  ENOTTY: 'not a btrfs filesystem',
  ENOTREADONLY: 'is not read-only',
  EBADCRC: 'a command of the send stream does not match its checksum',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EBUSY: 'device or resource busy',
  EINVAL: 'invalid argument',
};

/** Maps a failure of `btrfs` to the zomg error a caller can act on; `op` says what failed. */
function driverError(op: string, err: unknown): unknown {
  if (err instanceof ZomgError) return err; // e.g. ZOMG_TOOL_MISSING from run()
  if (isNoSpace(err)) return new PoolFullError(undefined, { cause: err });
  if (err instanceof IoctlError) {
    const reason = IOCTL_REASONS[err.code];
    return new ToolError('ZOMG_BTRFS_FAILED', `btrfs could not ${op}${reason ? `: ${reason}` : ''}`, { cause: err });
  }
  if (err instanceof CommandError) {
    const reason = REASONS.find((r) => err.stderr.toLowerCase().includes(r.toLowerCase()));
    return new ToolError('ZOMG_BTRFS_FAILED', `btrfs could not ${op}${reason ? `: ${reason.toLowerCase()}` : ''}`, { cause: err });
  }
  return err; // aborts and programmer errors pass through untouched
}

async function btrfs(op: string, args: readonly string[]): Promise<string> {
  // No timeout: these are single ioctls that a kill cannot interrupt anyway.
  try {
    return await runText('btrfs', args);
  } catch (err) {
    throw driverError(op, err);
  }
}


/** True when `child` is strictly below `parent` (both normalized absolute paths). */
const isBelow = (child: string, parent: string): boolean =>
  child.startsWith(parent.endsWith(sep) ? parent : parent + sep) && child !== parent;

const LIST_LINE = /^ID \d+ gen \d+ top level \d+ path (.*)$/;

export class BtrfsDriver implements StorageDriver {
  readonly name = 'btrfs';
  readonly capabilities: DriverCapabilities = { instantSnapshots: true, readOnly: true, sendStream: true };

  /** The addon's tree searches (none when btrfs-progs stands in for it). */
  get treeReader(): TreeReader | undefined {
    return btrfsIoctl()?.treeReader;
  }

  async createSubvolume(path: string): Promise<void> {
    await btrfs('create a subvolume', ['subvolume', 'create', path]);
  }

  /**
   * Snapshots `source` and every subvolume nested in it to `dest`. Each nested subvolume is
   * its own snapshot, taken just after its parent's: the tree is not one atomic point in
   * time, so snapshot quiescent (stopped or read-only) sources when that matters. Nested
   * snapshots are writable unless `readOnly`, whatever the source's flags were.
   */
  async snapshot(source: string, dest: string, options: SnapshotOptions = {}): Promise<{ nested: number }> {
    const readOnly = options.readOnly === true;
    if (options.withoutNested === true) {
      await snapshotOne('snapshot a subvolume', source, dest, readOnly);
      return { nested: 0 };
    }
    // The common case has no nested subvolume: take the snapshot while the nested ones are
    // listed (two processes in parallel, so it costs about one), and redo it the long way
    // only when there turn out to be some.
    const [listed, taken] = await Promise.allSettled([
      this.listNested(source),
      snapshotOne('snapshot a subvolume', source, dest, readOnly),
    ]);
    if (listed.status === 'rejected') {
      if (taken.status === 'fulfilled') await this.deleteSubvolume(dest);
      throw listed.reason;
    }
    if (taken.status === 'rejected') throw taken.reason;
    const nested = listed.value;
    if (nested.length === 0) return { nested: 0 };
    await this.deleteSubvolume(dest);
    // Placeholders must be replaced before anything is read-only, so build writable and
    // flip `ro` at the end (this also covers a read-only source).
    await withReverter(async (r) => {
      await snapshotOne('snapshot a subvolume', source, dest, false);
      r.add('delete the partial snapshot', () => this.deleteSubvolume(dest));
      const placed = [dest];
      for (const sub of nested) {
        const target = join(dest, relative(source, sub));
        try {
          await fsPromises().rmdir(target); // the empty directory btrfs leaves in place of a nested subvolume
        } catch (err) {
          // No placeholder: the subvolume (or its parent) appeared after its parent's
          // snapshot was taken, so it is not part of this point in time.
          if (isErrno(err, 'ENOENT')) continue;
          throw err;
        }
        await snapshotOne('snapshot a nested subvolume', sub, target, false);
        placed.push(target);
      }
      if (readOnly) for (const p of placed.reverse()) await this.setReadOnly(p, true);
    });
    return { nested: nested.length };
  }

  async deleteSubvolume(path: string, options: { waitForSpace?: boolean; noneNested?: boolean } = {}): Promise<void> {
    if (!pathExists(path)) return;
    // The id, to wait for exactly this subvolume's cleanup (`subvolume sync` without ids would
    // wait for the next transaction commit).
    const id = options.waitForSpace ? (await btrfs('read a subvolume id', ['inspect-internal', 'rootid', path])).trim() : undefined;
    const nested = options.noneNested ? [] : await this.listNested(path);
    if (nested.length > 0) {
      // A nested subvolume's directory entry lives in its parent subvolume, and btrfs
      // cannot unlink it while that parent is read-only (EROFS), so make parents writable.
      const all = [path, ...nested];
      const parents = new Set(nested.map((n) => all.filter((p) => isBelow(n, p)).reduce((a, b) => (b.length > a.length ? b : a))));
      for (const p of parents) if (await this.isReadOnly(p)) await this.setReadOnly(p, false);
    }
    const io = btrfsIoctl();
    if (io && nested.length === 0 && id === undefined) {
      try {
        await io.destroy(dirname(path), basename(path));
      } catch (err) {
        throw driverError('delete a subvolume', err);
      }
      return;
    }
    // listNested is parents-first, so reversed it is children-first; the subvolumes
    // themselves may stay read-only (btrfs deletes a read-only subvolume as is).
    await btrfs('delete a subvolume', ['subvolume', 'delete', ...(id ? ['--commit-after'] : []), ...nested.reverse(), path]);
    if (id) await btrfs('wait for a deleted subvolume to be cleaned', ['subvolume', 'sync', dirname(path), id]);
  }

  async setReadOnly(path: string, readOnly: boolean): Promise<void> {
    await btrfs(readOnly ? 'make a subvolume read-only' : 'make a subvolume writable', ['property', 'set', '-ts', path, 'ro', String(readOnly)]);
  }

  async isReadOnly(path: string): Promise<boolean> {
    const out = await btrfs('read a subvolume flag', ['property', 'get', '-ts', path, 'ro']);
    return out.trim() === 'ro=true';
  }

  /** The libbtrfsutil test: a directory on btrfs whose inode is a subvolume root. Missing → false. */
  async isSubvolume(path: string): Promise<boolean> {
    try {
      const [st, fs] = await Promise.all([fsPromises().lstat(path), fsPromises().statfs(path)]);
      return st.isDirectory() && st.ino === SUBVOLUME_ROOT_INO && fs.type === BTRFS_SUPER_MAGIC;
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR')) return false;
      throw err;
    }
  }

  /**
   * One `btrfs subvolume list -o` per subvolume found (usually just one call): cost follows
   * the number of subvolumes, never the number of files. Paths are returned under `path`
   * as given, parents before children.
   */
  async listNested(path: string): Promise<string[]> {
    const top = await fsPromises().realpath(path);
    const mount = mountHolding(top);
    if (mount?.fstype !== 'btrfs') throw new Error(`${path} is not on btrfs`);
    const mountRoot = mount.root.replace(/^\/+/, '');
    const found: string[] = [];
    const visit = async (dir: string): Promise<void> => {
      const out = await btrfs('list subvolumes', ['subvolume', 'list', '-o', dir]);
      const children: string[] = [];
      for (const line of out.split('\n')) {
        const fsPath = LIST_LINE.exec(line)?.[1];
        if (fsPath === undefined) continue;
        // Paths are relative to the filesystem's top level; only those inside the mounted
        // subtree are reachable, and only those below `dir` are wanted.
        let rel: string;
        if (mountRoot === '') rel = fsPath;
        else if (fsPath.startsWith(`${mountRoot}/`)) rel = fsPath.slice(mountRoot.length + 1);
        else continue;
        const host = join(mount.point, rel);
        if (isBelow(host, dir)) children.push(host);
      }
      for (const child of children.sort()) {
        if (!(await this.isSubvolume(child))) throw new Error(`btrfs subvolume list named ${child}, which is not a subvolume`);
        found.push(child);
        await visit(child);
      }
    };
    await visit(top);
    return found.map((p) => join(path, relative(top, p)));
  }

  /**
   * The apparent size: the sum of `st_size` over regular files and symlinks, hard links
   * counted once, nested subvolumes included. Chosen over `btrfs filesystem du` because it
   * does not depend on whether data has been flushed yet and counts inline (small) files,
   * which `du`'s FIEMAP totals report as 0; it counts shared extents in full, so it is the
   * logical size of the tree, not what deleting it would free.
   */
  async sizeBytes(path: string): Promise<number> {
    const seen = new Set<string>();
    let total = 0;
    const walk = async (dir: string): Promise<void> => {
      const entries = await fsPromises().readdir(dir, { withFileTypes: true });
      const files = entries.filter((e) => e.isFile() || e.isSymbolicLink());
      await Promise.all(
        files.map(async (e) => {
          const st = await fsPromises().lstat(join(dir, e.name));
          if (st.nlink > 1) {
            const key = `${st.dev}:${st.ino}`;
            if (seen.has(key)) return;
            seen.add(key);
          }
          total += st.size;
        }),
      );
      for (const e of entries) if (e.isDirectory()) await walk(join(dir, e.name));
    };
    await walk(path);
    return total;
  }

  /**
   * Streams `btrfs send --no-data -p parent child`. A non-zero exit is emitted as an error
   * on the stream; destroying the stream early stops btrfs.
   */
  sendNoData(parent: string, child: string, options: { signal?: AbortSignal } = {}): Readable {
    const io = btrfsIoctl();
    if (io) {
      // In process, in 64 KiB blocks from the addon's reader thread; errors mapped as below.
      return io.sendNoData(parent, child, { ...options, mapError: (err) => driverError('send a change stream', err) as Error });
    }
    // Without data the stream is all small commands, which btrfs writes one by one (a read of
    // ~100 bytes each: 11,000 wakeups of the reader for 10,000 rewritten files); read in 64 KiB
    // blocks, the diff of that pair took ~100 ms (12%) less.
    return sendStream(['send', '--no-data', '-q', '-p', parent, child], 'send a change stream', options.signal, 64 * 1024);
  }

  /**
   * Streams `btrfs send` with file data: the whole of `child`, or with `parent` only what
   * changed since it (both read-only). Errors as for `sendNoData`.
   */
  send(child: string, options: { parent?: string; signal?: AbortSignal } = {}): Readable {
    return sendStream(['send', '-q', ...(options.parent !== undefined ? ['-p', options.parent] : []), child], 'send a subvolume', options.signal);
  }

  /**
   * `btrfs receive -e` of one stream into the directory `dir`: the received subvolume is
   * created there, read-only, under the name the stream carries. An incremental stream
   * needs its parent received (or present) on the same filesystem.
   */
  async receive(input: Readable, dir: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    try {
      await run('btrfs', ['receive', '-e', dir], { input, ...(options.signal ? { signal: options.signal } : {}) });
    } catch (err) {
      if (err instanceof ZomgError || isNoSpace(err)) throw driverError('receive a stream', err);
      if (err instanceof CommandError) {
        throw new ToolError('ZOMG_RECEIVE_FAILED', `btrfs could not receive the stream: ${lastLine(err.stderr)}`, { cause: err });
      }
      throw err;
    }
  }

  /** `btrfs inspect-internal inode-resolve`: every name of inode `ino` under `root`, relative to it. */
  async inodePaths(root: string, ino: number, options: { signal?: AbortSignal } = {}): Promise<Buffer[]> {
    let stdout: Buffer;
    try {
      ({ stdout } = await run('btrfs', ['inspect-internal', 'inode-resolve', String(ino), root], options.signal ? { signal: options.signal } : {}));
    } catch (err) {
      throw driverError('resolve an inode to its names', err);
    }
    const prefix = Buffer.from(root.endsWith('/') ? root : `${root}/`);
    const paths: Buffer[] = [];
    let start = 0;
    for (let i = 0; i <= stdout.length; i++) {
      if (i < stdout.length && stdout[i] !== 0x0a) continue;
      const line = stdout.subarray(start, i);
      start = i + 1;
      if (line.length === 0) continue;
      paths.push(Buffer.from(line.subarray(0, prefix.length).equals(prefix) ? line.subarray(prefix.length) : line));
    }
    return paths;
  }
}

/** One subvolume snapshot, with nothing nested: by ioctl when the addon is there, else by btrfs. */
async function snapshotOne(op: string, source: string, dest: string, readOnly: boolean): Promise<void> {
  const io = btrfsIoctl();
  if (!io) {
    await btrfs(op, ['subvolume', 'snapshot', ...(readOnly ? ['-r'] : []), source, dest]);
    return;
  }
  try {
    await io.snapshot(source, dirname(dest), basename(dest), readOnly);
  } catch (err) {
    throw driverError(op, err);
  }
}

/** The last line btrfs printed, with host paths cut down to their last component. */
function lastLine(stderr: string): string {
  const line = stderr.trim().split('\n').at(-1) ?? '';
  return line.replace(/\/[^\s:]*\/([^/\s:]+)/g, '$1') || 'unknown error';
}

/**
 * Runs a `btrfs send` and streams its stdout. run() ends the Writable it pipes into as soon
 * as btrfs closes stdout, before the exit status is known; this sink forwards chunks (with
 * backpressure) but leaves ending the stream to the exit status, so a failed send is an
 * error, never a short stream that looks whole. Destroying the stream early stops btrfs.
 */
function sendStream(args: string[], op: string, outer: AbortSignal | undefined, blocks?: number): Readable {
  const out = new PassThrough({ highWaterMark: 1 << 20 });
  const stop = new AbortController();
  const signal = outer ? AbortSignal.any([stop.signal, outer]) : stop.signal;
  let settled = false;
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      if (out.destroyed || out.write(chunk)) callback();
      else out.once('drain', () => callback());
    },
  });
  out.on('close', () => {
    if (!settled) stop.abort();
  });
  run('btrfs', args, { stdout: sink, signal, ...(blocks !== undefined ? { stdoutBlocks: blocks } : {}) }).then(
    () => {
      settled = true;
      out.end();
    },
    (err: unknown) => {
      settled = true;
      out.destroy(driverError(op, err) as Error);
    },
  );
  return out;
}
