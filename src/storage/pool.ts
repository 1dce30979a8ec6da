/**
 * The pool's lifecycle: find or create the btrfs filesystem that holds every subvolume,
 * and lay out its layer directories (SPEC §3).
 *
 * Without a configured pool, `<stateDir>/pool` is used: as a plain directory when the state
 * directory is already on btrfs, otherwise as the mount point of a sparse loop image
 * `<stateDir>/pool.img` that is created on first use and mounted again after a reboot. The
 * one file that runs mount, umount, losetup, mkfs.btrfs and truncate.
 */
import { chmodSync, linkSync, mkdirSync, readFileSync, realpathSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConflictError, type ErrorCode, InvalidArgumentError, ToolError, UnsupportedError, ZomgError } from '../core/errors.js';
import { fsPromises, nonceHex } from '../system/builtins.js';
import { isErrno, pathExists } from '../system/fs.js';
import { LockManager } from '../system/lock.js';
import { CommandError, run, runText } from '../system/run.js';
import { mountAt, mountHolding } from '../system/mountinfo.js';
import { BTRFS_SUPER_MAGIC } from './btrfs.js';
import { LAYERS } from './layout.js';


export const DEFAULT_IMAGE_SIZE_BYTES = 20 * 1024 ** 3;
// Below this, separate data and metadata chunks waste much of the image and hit ENOSPC
// early; mkfs.btrfs recommends mixed block groups for small filesystems.
const MIXED_BELOW_BYTES = 1024 ** 3;

export interface OpenPoolOptions {
  stateDir: string;
  /** An existing btrfs mount or directory on btrfs to use instead of `<stateDir>/pool`. */
  poolPath?: string;
  /** Size of the loop image when one has to be created (default 20 GiB, sparse). */
  imageSizeBytes?: number;
}

export interface OpenedPool {
  /** The pool's root directory (holds the layer directories). */
  root: string;
  /** 'loop': zomg's own image, mounted on `root`; 'existing': a btrfs zomg did not mount. */
  mounted: 'loop' | 'existing';
  /** Things the operator should fix (e.g. a configured pool mounted without `nosuid,nodev`). */
  warnings?: string[];
}

export interface ClosePoolResult {
  /** 'external': `<stateDir>/pool` is a btrfs mount zomg did not create, so it was left alone. */
  status: 'unmounted' | 'not-mounted' | 'external';
  message: string;
}

/** Opens (creating and mounting on first use) the pool and ensures its layer directories exist. */
export async function openPool(opts: OpenPoolOptions): Promise<OpenedPool> {
  let pool: OpenedPool;
  if (opts.poolPath !== undefined) {
    const root = resolve(opts.poolPath);
    requireBtrfs(root);
    pool = { root, mounted: 'existing' };
    const warning = unsafeMountWarning(root);
    if (warning !== undefined) pool.warnings = [warning];
  } else {
    mkdirSync(opts.stateDir, { recursive: true });
    const stateDir = realpathSync(opts.stateDir);
    const size = opts.imageSizeBytes ?? DEFAULT_IMAGE_SIZE_BYTES;
    // Serialized across processes, so two first uses never format or mount twice.
    pool = await lockPool(stateDir, () => openEmbedded(stateDir, size));
  }
  ensureLayers(pool.root);
  return pool;
}

/** The file in a pool's root that names the state directory it belongs to (its `state-id`). */
const OWNER_FILE = '.zomg-owner';
/** A state directory's id, made on its first use: what its pools' OWNER_FILE holds. */
const STATE_ID_FILE = 'state-id';

/**
 * Makes sure the pool belongs to this state directory, before anything repairs it. The
 * reconciler deletes a subvolume that has no row in the state's database (a crash's leftover):
 * a second state directory opened on the same pool (ZOMG_POOL_PATH, or a state directory made
 * anew beside its old pool) would delete every box of the first. So a pool names its state
 * directory's id in OWNER_FILE:
 * - named: it must be this state directory's (else ZOMG_POOL_OWNED);
 * - unnamed (a new pool, or one from before owner files): `mine()` says whether what it holds
 *   is this state directory's (the engine asks its database); the first to claim it names it.
 */
export function claimPool(root: string, stateDir: string, mine: () => boolean): void {
  const marker = join(root, OWNER_FILE);
  const id = stateId(stateDir);
  let owner = readTrimmed(marker);
  if (owner === undefined) {
    if (!mine()) {
      throw new ConflictError('ZOMG_POOL_OWNED', `the pool at ${root} holds boxes, bases or volumes this state directory does not know`, {
        hint: 'use the state directory that made them (ZOMG_HOME), or another pool',
      });
    }
    // Of two state directories claiming a new pool at once, one wins.
    owner = createOnce(marker, id);
  }
  if (owner !== id) {
    throw new ConflictError('ZOMG_POOL_OWNED', `the pool at ${root} belongs to another zomg state directory (id ${owner ?? '?'}; this one's is ${id})`, {
      hint: `use the state directory it belongs to (ZOMG_HOME), or another pool; if this is that state directory and its ${STATE_ID_FILE} was lost, write the pool's id back into ${join(stateDir, STATE_ID_FILE)}`,
    });
  }
}

/** Whether the pool still names this state directory (checked again before each repair). */
export function poolClaimedBy(root: string, stateDir: string): boolean {
  return readTrimmed(join(root, OWNER_FILE)) === readTrimmed(join(stateDir, STATE_ID_FILE));
}

/** This state directory's id, made (once, whoever comes first) on its first use. */
function stateId(stateDir: string): string {
  const file = join(stateDir, STATE_ID_FILE);
  const known = readTrimmed(file);
  if (known !== undefined && known !== '') return known;
  mkdirSync(stateDir, { recursive: true });
  // Two first starts agree on the first one's id.
  const id = createOnce(file, nonceHex(16));
  if (id === '') throw new ToolError('ZOMG_TOOL_FAILED', `${file} is empty`, { hint: `write the id its pool's ${OWNER_FILE} holds into it (or remove it, for a new state directory)` });
  return id;
}

/**
 * Writes `text` to `path` unless it exists, whole (written aside, then linked into place, so no
 * reader sees it half-written and of two writers the first wins), and returns what it holds.
 */
function createOnce(path: string, text: string): string {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${text}\n`, { mode: 0o600 });
  try {
    linkSync(tmp, path);
  } catch (err) {
    if (!isErrno(err, 'EEXIST')) throw err;
  } finally {
    rmSync(tmp, { force: true });
  }
  return readTrimmed(path) ?? '';
}

function readTrimmed(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    throw err;
  }
}

/** Unmounts the pool's loop image and detaches its loop device. Idempotent. */
export async function closePool(stateDir: string): Promise<ClosePoolResult> {
  let dir: string;
  try {
    dir = await fsPromises().realpath(stateDir);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return NOT_MOUNTED;
    throw err;
  }
  return lockPool(dir, async () => {
    const root = join(dir, 'pool');
    const image = join(dir, 'pool.img');
    const mount = mountAt(root);
    if (mount && !backedBy(mount.source, image)) {
      return { status: 'external', message: 'The pool is a btrfs mount zomg did not create: left mounted' };
    }
    if (mount) await unmount(root);
    await detachLoops(image);
    return mount ? { status: 'unmounted', message: 'Unmounted the pool and detached its loop device' } : NOT_MOUNTED;
  });
}

const NOT_MOUNTED: ClosePoolResult = { status: 'not-mounted', message: 'The pool is not mounted: nothing to do' };

function lockPool<T>(stateDir: string, fn: () => Promise<T>): Promise<T> {
  // Formatting a 20 GiB sparse image and mounting it takes well under a second.
  return new LockManager(join(stateDir, 'locks')).with('pool', fn, { what: 'the storage pool', timeoutMs: 120_000 });
}

async function openEmbedded(stateDir: string, sizeBytes: number): Promise<OpenedPool> {
  const root = join(stateDir, 'pool');
  const image = join(stateDir, 'pool.img');
  const mount = mountAt(root);
  if (mount) {
    if (mount.fstype !== 'btrfs') throw notBtrfs();
    const ours = backedBy(mount.source, image);
    // A pool mounted by an older zomg (or by hand) without nosuid,nodev: a setuid binary
    // made in a box would be setuid for every host user; without noatime, reads in boxes
    // unshare the snapshots' metadata (see below). Our own image is fixed in place.
    if (ours && !['nosuid', 'nodev', 'noatime'].every((o) => mount.options.includes(o))) {
      await tool('ZOMG_POOL_MOUNT_FAILED', 'could not remount the pool noatime,nosuid,nodev', 'mount', ['-o', 'remount,noatime,nosuid,nodev', root]);
    }
    const warning = ours ? undefined : unsafeMountWarning(root);
    return { root, mounted: ours ? 'loop' : 'existing', ...(warning !== undefined ? { warnings: [warning] } : {}) };
  }
  const haveImage = pathExists(image);
  if (!haveImage && statfsSync(stateDir).type === BTRFS_SUPER_MAGIC) {
    mkdirSync(root, { recursive: true });
    const warning = unsafeMountWarning(root);
    return { root, mounted: 'existing', ...(warning !== undefined ? { warnings: [warning] } : {}) };
  }
  if (!haveImage) await createImage(image, sizeBytes);
  // A loop device left attached (e.g. by a crash) would make mount reuse or refuse it.
  await detachLoops(image);
  mkdirSync(root, { recursive: true });
  // noatime: atime updates would turn every read inside a box into metadata copy-on-write:
  // the first read of each file after a snapshot unshares its tree leaf from the
  // snapshot's, and every later `btrfs send` (the diff) compares those leaves and emits
  // their `utimes` (after an rsync of a Debian root, 3x the send time). nosuid,nodev: files made inside boxes
  // (setuid binaries, device nodes) must never act as such for the host's users; inside a
  // box the runtime decides (its own mount namespace).
  await tool('ZOMG_POOL_MOUNT_FAILED', 'could not mount the pool image', 'mount', ['-o', 'loop,noatime,nosuid,nodev', image, root]);
  return { root, mounted: 'loop' };
}

async function createImage(image: string, sizeBytes: number): Promise<void> {
  // Format under a temporary name, so a crash never leaves a half-made pool.img behind.
  const tmp = `${image}.tmp`;
  await fsPromises().rm(tmp, { force: true });
  await tool('ZOMG_POOL_CREATE_FAILED', 'could not create the pool image', 'truncate', ['-s', String(sizeBytes), tmp]);
  await fsPromises().chmod(tmp, 0o600);
  const mixed = sizeBytes < MIXED_BELOW_BYTES ? ['--mixed'] : [];
  await tool('ZOMG_POOL_CREATE_FAILED', 'could not format the pool image', 'mkfs.btrfs', ['-q', ...mixed, tmp]);
  await fsPromises().rename(tmp, image);
}

/**
 * Every start of every command opens the pool: what it checks there (the filesystem, the
 * mount options, the layer directories) is a few system calls, made synchronously. Through
 * Node's thread pool, each cost a round trip of its own: opening the pool took 3.0 ms, now
 * 1.3–1.6 (stage marks, bench/README.md "Diff, eighth round").
 */
function ensureLayers(root: string): void {
  // 0700: the layers hold other boxes' roots, snapshots and volumes, which no host user
  // but root may read (a box's files keep the modes the box gave them) or traverse.
  for (const layer of LAYERS) {
    mkdirSync(join(root, layer), { recursive: true, mode: 0o700 });
    chmodSync(join(root, layer), 0o700);
  }
}

/**
 * A warning when the filesystem holding `path` (a configured pool) is mounted without
 * `nosuid` or `nodev`: zomg does not remount a filesystem it did not mount.
 */
function unsafeMountWarning(path: string): string | undefined {
  const mount = mountHolding(realpathSync(path));
  if (mount === undefined) return undefined;
  const missing = ['nosuid', 'nodev'].filter((o) => !mount.options.includes(o));
  if (missing.length === 0) return undefined;
  return `the configured pool's filesystem is mounted without ${missing.join(',')}: setuid binaries or device nodes made inside a box act as such for every host user (remount it with -o remount,nosuid,nodev)`;
}

function requireBtrfs(path: string): void {
  let type: number;
  try {
    type = statfsSync(path).type;
  } catch (err) {
    if (isErrno(err, 'ENOENT')) {
      throw new InvalidArgumentError('the configured pool directory does not exist', { code: 'ZOMG_POOL_NOT_FOUND', cause: err });
    }
    throw err;
  }
  if (type !== BTRFS_SUPER_MAGIC) throw notBtrfs();
}

const notBtrfs = (): UnsupportedError =>
  new UnsupportedError('ZOMG_POOL_NOT_BTRFS', 'the pool is not on a btrfs filesystem', {
    hint: 'configure a btrfs mount or a directory on btrfs as the pool, or leave it unset to use a loop image in the state directory',
  });


/** Runs a program, mapping its failure to a ToolError that names the step, not host paths. */
async function tool(code: ErrorCode, message: string, command: string, args: string[]): Promise<string> {
  try {
    return await runText(command, args);
  } catch (err) {
    if (err instanceof ZomgError) throw err;
    throw new ToolError(code, message, { cause: err });
  }
}

/** True when the block device `source` is a loop device backed by `image`. */
function backedBy(source: string, image: string): boolean {
  if (!/^\/dev\/loop\d+$/.test(source)) return false;
  try {
    const file = readFileSync(`/sys/block/${basename(source)}/loop/backing_file`, 'utf8').trim();
    return file === image || file === `${image} (deleted)`;
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return false;
    throw err;
  }
}

async function unmount(root: string): Promise<void> {
  try {
    await run('umount', [root]);
  } catch (err) {
    if (err instanceof CommandError && /target is busy|Device or resource busy/i.test(err.stderr)) {
      throw new ConflictError('ZOMG_POOL_BUSY', 'the pool is in use and cannot be unmounted', {
        hint: 'stop running boxes (and leave any shell inside the pool), then try again',
        cause: err,
      });
    }
    if (err instanceof ZomgError) throw err;
    throw new ToolError('ZOMG_POOL_UNMOUNT_FAILED', 'could not unmount the pool', { cause: err });
  }
}

async function loopsOf(image: string): Promise<string[]> {
  if (!pathExists(image)) return [];
  const out = await tool('ZOMG_POOL_LOOP_FAILED', 'could not list loop devices', 'losetup', ['-j', image]);
  // "/dev/loop3: [65024]:2149489 (/path/pool.img)"
  return out
    .split('\n')
    .map((l) => /^(\/dev\/loop\d+):/.exec(l)?.[1])
    .filter((d): d is string => d !== undefined);
}

/**
 * Detaches every loop device backed by `image` (only called when it is not mounted). An
 * unmounted loop mount normally detaches itself (autoclear), but the kernel does that
 * asynchronously, so wait briefly and detach explicitly what is left.
 */
async function detachLoops(image: string): Promise<void> {
  const deadline = Date.now() + 2000;
  for (let attempt = 0; ; attempt++) {
    const devices = await loopsOf(image);
    if (devices.length === 0) return;
    if (Date.now() > deadline) {
      throw new ToolError('ZOMG_POOL_LOOP_FAILED', 'a loop device of the pool image could not be detached', {
        hint: 'run `losetup -a` to see what holds it',
      });
    }
    // Give autoclear a moment before forcing it.
    if (attempt > 0) {
      // A failure here (the device vanished meanwhile, or is busy) is judged by the next listing.
      for (const dev of devices) await run('losetup', ['-d', dev]).catch(() => undefined);
    }
    await sleep(50);
  }
}
