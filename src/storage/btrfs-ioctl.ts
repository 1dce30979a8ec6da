/**
 * btrfs ioctls made in process (native/btrfs.c, built into dist/native/zomg-btrfs.node):
 * a snapshot, the deletion of a subvolume with nothing nested in it, and `send --no-data`.
 * They are what `btrfs subvolume snapshot`, `btrfs subvolume delete` and `btrfs send`
 * (behind `dd`) do, without starting those programs: on the diff of a package install,
 * where a snapshot, a send and a delete run for every `zomg diff status`, that is three or
 * four processes fewer (bench/README.md, "Diff, fifth round"). The tree searches of the
 * diff's tree comparison (`treeReader`: TREE_SEARCH_V2, INO_LOOKUP) have no program to stand
 * in for them: without the addon a diff takes the send.
 *
 * `btrfsIoctl()` is undefined when the addon was not built, cannot load (another Node ABI)
 * or ZOMG_BTRFS_PROGS=1 is set; the driver then runs btrfs-progs as before. Failures are
 * Node-style errno errors (`code`, `errno`, `syscall: 'ioctl'`), which the driver maps
 * like btrfs-progs' messages.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { getSystemErrorName } from 'node:util';
import { Readable } from 'node:stream';
import type { TreeKey, TreeReader } from './diff/tree.js';
import { CHECKSUMS_CHECKED } from './sendstream.js';

interface SendHandle {
  flow(on: boolean): void;
  cancel(): void;
}

interface Addon {
  snapshot(source: string, dir: string, name: string, readOnly: boolean): Promise<number>;
  destroy(dir: string, name: string): Promise<number>;
  sendNoData(child: string, parent: string, onChunk: (chunk: Buffer) => void, onEnd: (errno: number) => void): SendHandle;
  ENOTSUBVOL: number;
  ENOTREADONLY: number;
  EBADCRC: number;
  /** The reader's checksum check over a stream in memory, fed `piece` bytes at a time: 0, or EBADCRC. */
  checkSendStream(stream: Buffer, piece: number): number;
  /** The items in a key range (search headers and items), or errno. */
  treeSearch?(fd: number, tree: number, minObjectid: number | bigint, minType: number, minOffset: number | bigint, maxObjectid: number | bigint, maxType: number, maxOffset: number | bigint, minTransid: number, limitBytes: number, types?: Buffer): Buffer | number;
  /** A directory's path in its subvolume, or errno. */
  inoLookup?(fd: number, tree: number, objectid: number): Buffer | number;
  /** The subvolume id of a directory, or -errno. */
  treeId?(fd: number): number;
}

/** What a failed ioctl reports: errno's name, or zomg's for the checks btrfs-progs also makes. */
export class IoctlError extends Error {
  readonly syscall = 'ioctl';
  constructor(
    readonly code: string,
    readonly errno: number,
    message: string,
  ) {
    super(message);
    this.name = 'IoctlError';
  }
}

export interface BtrfsIoctl {
  /** A snapshot of the subvolume `source` named `name` in the directory `dir`. */
  snapshot(source: string, dir: string, name: string, readOnly: boolean): Promise<void>;
  /** Deletes the subvolume `name` in `dir`; it must hold no nested subvolume. */
  destroy(dir: string, name: string): Promise<void>;
  /**
   * `btrfs send --no-data -p parent child` (both read-only subvolume roots) as a stream of
   * 64 KiB blocks (the last one shorter). An error is emitted on the stream, never a short
   * stream that looks whole; destroying the stream ends the send. The reader checks each
   * command's crc32c as it passes (EBADCRC ends the send at the first that does not match),
   * and the stream says so (`CHECKSUMS_CHECKED`), so its parser need not check them again.
   */
  sendNoData(parent: string, child: string, options?: { signal?: AbortSignal; mapError?: (err: IoctlError) => Error }): Readable;
  /**
   * The reader's checksum check over a stream held in memory, fed `piece` bytes at a time
   * as reads would: whether every complete command matches its crc32c.
   */
  checksumsMatch(stream: Buffer, piece?: number): boolean;
  /** The tree searches of the diff's tree comparison (storage/diff/tree.ts); undefined with an older addon. */
  treeReader: TreeReader | undefined;
}

let loaded: BtrfsIoctl | null | undefined;

/** The in-process ioctls, or undefined when zomg must run btrfs-progs instead. */
export function btrfsIoctl(): BtrfsIoctl | undefined {
  if (loaded === undefined) loaded = load();
  return loaded ?? undefined;
}

function load(): BtrfsIoctl | null {
  if (process.env.ZOMG_BTRFS_PROGS === '1') return null;
  const path = fileURLToPath(new URL('../../native/zomg-btrfs.node', import.meta.url));
  if (!existsSync(path)) return null;
  let addon: Addon;
  try {
    addon = createRequire(import.meta.url)(path) as Addon;
  } catch {
    return null;
  }
  return wrap(addon);
}

function wrap(addon: Addon): BtrfsIoctl {
  const failure = (errno: number, what: string): IoctlError => {
    if (errno === addon.ENOTSUBVOL) return new IoctlError('ENOTSUBVOL', errno, `${what}: not a btrfs subvolume`);
    if (errno === addon.ENOTREADONLY) return new IoctlError('ENOTREADONLY', errno, `${what}: the subvolume is not read-only`);
    if (errno === addon.EBADCRC) return new IoctlError('EBADCRC', errno, `${what}: a command does not match its checksum`);
    let code: string;
    try {
      code = getSystemErrorName(-errno);
    } catch {
      code = `E${errno}`;
    }
    return new IoctlError(code, errno, `${what}: ${code}`);
  };
  const checked = (paths: string[]): void => {
    // A path with a NUL byte would be cut short in C; Node's own fs refuses it the same way.
    for (const p of paths) if (p.includes('\0')) throw Object.assign(new TypeError(`a path holds a NUL byte`), { code: 'ERR_INVALID_ARG_VALUE' });
  };
  return {
    async snapshot(source, dir, name, readOnly) {
      checked([source, dir, name]);
      const errno = await addon.snapshot(source, dir, name, readOnly);
      if (errno !== 0) throw failure(errno, 'snapshot a subvolume');
    },
    async destroy(dir, name) {
      checked([dir, name]);
      const errno = await addon.destroy(dir, name);
      if (errno !== 0) throw failure(errno, 'delete a subvolume');
    },
    sendNoData(parent, child, { signal, mapError = (err: IoctlError): Error => err } = {}) {
      checked([parent, child]);
      let ended = false;
      let whenEnded: (() => void) | undefined;
      const out = new Readable({
        highWaterMark: 1 << 20,
        read() {
          handle.flow(true);
        },
        // A stream destroyed mid-send closes (and errors) once the ioctl has returned, so the
        // subvolumes are free (a delete is not refused with EPERM) by the time anyone hears.
        destroy(err, callback) {
          signal?.removeEventListener('abort', onAbort);
          if (ended) {
            callback(err);
            return;
          }
          whenEnded = () => callback(err);
          handle.cancel();
        },
      });
      const onAbort = (): void => {
        out.destroy(signal?.reason instanceof Error ? signal.reason : Object.assign(new Error('the send was aborted'), { name: 'AbortError' }));
      };
      // Its callbacks come from the addon's threads, later: `handle` is set by then.
      const handle: SendHandle = addon.sendNoData(
        child,
        parent,
        (chunk) => {
          if (!out.destroyed && !out.push(chunk)) handle.flow(false);
        },
        (errno) => {
          ended = true;
          if (whenEnded) {
            whenEnded();
            return;
          }
          // The abort listener stays until destroy(): an abort while blocks are still
          // buffered ends the stream with an AbortError, not a normal end.
          if (out.destroyed) return;
          if (errno === 0) out.push(null);
          else out.destroy(mapError(failure(errno, 'send a change stream')));
        },
      );
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
      // An addon built before its reader checked them has no checkSendStream: its streams are checked by the parser.
      if (typeof addon.checkSendStream === 'function') Object.defineProperty(out, CHECKSUMS_CHECKED, { value: true });
      return out;
    },
    checksumsMatch(stream, piece = Math.max(stream.length, 1)) {
      return addon.checkSendStream(stream, piece) === 0;
    },
    treeReader: treeReader(addon, failure),
  };
}

/** The 256-bit mask of item types the addon's tree search keeps. */
function typeMask(types: readonly number[]): Buffer {
  const mask = Buffer.alloc(32);
  for (const t of types) mask[t >> 3] = (mask[t >> 3] as number) | (1 << (t & 7));
  return mask;
}

function treeReader(addon: Addon, failure: (errno: number, what: string) => IoctlError): TreeReader | undefined {
  const { treeSearch, inoLookup, treeId } = addon;
  if (treeSearch === undefined || inoLookup === undefined || treeId === undefined) return undefined;
  const u64 = (v: number | bigint): number | bigint => (typeof v === 'bigint' && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
  return {
    treeId(fd) {
      const id = treeId(fd);
      if (id < 0) throw failure(-id, 'read the id of a subvolume');
      return id;
    },
    search(fd, tree, min: TreeKey, max: TreeKey, minTransid, limitBytes, types) {
      const r = treeSearch(fd, tree, u64(min[0]), min[1], u64(min[2]), u64(max[0]), max[1], u64(max[2]), minTransid, Math.min(limitBytes, Number.MAX_SAFE_INTEGER), types && typeMask(types));
      if (typeof r === 'number') throw failure(r, 'search a subvolume tree');
      return r;
    },
    inoLookup(fd, tree, objectid) {
      const r = inoLookup(fd, tree, objectid);
      if (typeof r === 'number') throw failure(r, 'look up a directory by inode');
      return r;
    },
  };
}
