/**
 * The engine's composition: state directory, pool, database, runtime and locks, opened
 * once and shared by every use case.
 */
import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Db, openDatabase } from '../db/database.js';
import { BasesRepo } from '../db/bases-repo.js';
import { BoxesRepo, SnapshotsRepo } from '../db/boxes-repo.js';
import { VolumesRepo } from '../db/volumes-repo.js';
import { LockManager } from '../system/lock.js';
import { BtrfsDriver } from '../storage/btrfs.js';
import { Pool } from '../storage/layout.js';
import { claimPool, openPool } from '../storage/pool.js';
import { BwrapRuntime } from '../runtime/bwrap.js';
import type { BoxRuntime } from '../runtime/runtime.js';

export interface EngineOptions {
  /** Default `/var/lib/zomg`. */
  stateDir: string;
  /** An existing btrfs mount (or btrfs directory) to use as the pool instead of the loopback image. */
  poolPath?: string;
  /** Size of the loopback image created on first use. */
  poolImageSizeBytes?: number;
  /** Where the maintained bases' build scripts live (default: the repository's `bases/`). */
  maintainedBasesDir?: string;
  /**
   * Called when sizes are waiting to be computed. The default computes them in-process in
   * the background; a short-lived CLI process hands the work to a detached process instead.
   */
  onSizesPending?: () => void;
  /**
   * When the reconciler runs at open: `always` (the server, tests), `if-needed` (a CLI
   * process: only when a crash left evidence), `never` (background workers).
   */
  reconcile?: 'always' | 'if-needed' | 'never';
  /** With `reconcile: 'always'`: look for crash leftovers again every this many ms (the server). */
  repairEveryMs?: number;
  /** The API URL injected into boxes as ZOMG_API_URL. */
  apiUrl?: string;
  /**
   * How `base build` hands the built root filesystem over: `auto` (default) snapshots
   * podman's layer when it can, else exports; the others force one path (benchmarks, tests).
   */
  buildHandover?: 'auto' | 'snapshot' | 'export';
  /** podman's `--runroot` for zomg's build store (default: under /run/zomg, keyed by the pool). */
  podmanRunroot?: string;
  /** Test hook: called between the steps of multi-step mutations, to inject failures. */
  faultPoint?: (step: string) => void | Promise<void>;
  now?: () => Date;
  /** Where operator warnings go (an unsafe pool mount); default: stderr. */
  onWarning?: (message: string) => void;
}

const defaultWarn = (message: string): void => {
  process.stderr.write(`warning: ${message}\n`);
};

export interface EngineContext {
  options: EngineOptions;
  stateDir: string;
  /** The pool's layout and every subvolume operation on it. */
  pool: Pool;
  poolMount: 'loop' | 'existing';
  db: Db;
  bases: BasesRepo;
  boxes: BoxesRepo;
  snapshots: SnapshotsRepo;
  volumes: VolumesRepo;
  runtime: BoxRuntime;
  locks: LockManager;
  maintainedBasesDir: string;
  now(): Date;
  fault(step: string): Promise<void>;
  /** `text` with the state directory and pool paths replaced (tool output reaching API clients). */
  redact(text: string): string;
}

const defaultBasesDir = (): string => fileURLToPath(new URL('../../../bases/', import.meta.url));

/**
 * Whether what a pool without an owner file holds is this state directory's (storage/pool.ts
 * claimPool): nothing at all, a box or a volume its database knows (their ids are random), or
 * only bases, all of which it knows (a base version's name is not: `debian` is every state
 * directory's that imported one). Listed as the reconciler lists them.
 */
function poolIsMine(pool: Pool, db: Db): boolean {
  const boxes = new BoxesRepo(db);
  const volumes = new VolumesRepo(db);
  const bases = new BasesRepo(db);
  const roots = pool.listRoots();
  const vols = pool.listVolumes();
  if (roots.some((id) => boxes.byId(id) !== undefined) || vols.some((id) => volumes.byId(id) !== undefined)) return true;
  return roots.length === 0 && vols.length === 0 && pool.listBases().every((name) => bases.versionExists(name));
}

export async function openContext(options: EngineOptions): Promise<EngineContext> {
  const stateDir = options.stateDir;
  // 0700: the state directory holds the database, the token and every box's run state;
  // no host user but root has business there. An existing directory is tightened too.
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  chmodSync(stateDir, 0o700);
  const opened = await openPool({
    stateDir,
    ...(options.poolPath !== undefined ? { poolPath: options.poolPath } : {}),
    ...(options.poolImageSizeBytes !== undefined ? { imageSizeBytes: options.poolImageSizeBytes } : {}),
  });
  const pool = new Pool(opened.root, new BtrfsDriver());
  for (const warning of opened.warnings ?? []) (options.onWarning ?? defaultWarn)(warning);
  const db = openDatabase(join(stateDir, 'zomg.db'));
  try {
    claimPool(opened.root, stateDir, () => poolIsMine(pool, db));
  } catch (err) {
    db.close();
    throw err;
  }
  return {
    options,
    stateDir,
    pool,
    poolMount: opened.mounted,
    db,
    bases: new BasesRepo(db),
    boxes: new BoxesRepo(db),
    snapshots: new SnapshotsRepo(db),
    volumes: new VolumesRepo(db),
    runtime: new BwrapRuntime(stateDir),
    locks: new LockManager(join(stateDir, 'locks')),
    maintainedBasesDir: options.maintainedBasesDir ?? defaultBasesDir(),
    now: options.now ?? (() => new Date()),
    async fault(step) {
      await options.faultPoint?.(step);
    },
    redact(text) {
      return pool.redact(text).split(stateDir).join('<state>');
    },
  };
}

export const isoNow = (ctx: EngineContext): string => ctx.now().toISOString().replace(/\.\d{3}Z$/, 'Z');
