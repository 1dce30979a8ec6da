/**
 * The engine's composition: state directory, pool, database, storage driver and locks,
 * opened once and shared by every use case.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Db, openDatabase } from '../db/database.js';
import { BasesRepo } from '../db/bases-repo.js';
import { BoxesRepo, CheckpointsRepo } from '../db/boxes-repo.js';
import { PendingRepo } from '../db/pending-repo.js';
import { LockManager } from '../system/lock.js';
import { BtrfsDriver } from '../storage/btrfs.js';
import { openPool } from '../storage/pool.js';
import type { StorageDriver } from '../storage/driver.js';

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

export interface Paths {
  pool: string;
  bases: string;
  roots: string;
  checkpoints: string;
  staging: string;
}

export interface EngineContext {
  options: EngineOptions;
  stateDir: string;
  paths: Paths;
  pool: { root: string; mounted: 'loop' | 'existing' };
  db: Db;
  bases: BasesRepo;
  boxes: BoxesRepo;
  checkpoints: CheckpointsRepo;
  pending: PendingRepo;
  driver: StorageDriver;
  locks: LockManager;
  maintainedBasesDir: string;
  now(): Date;
  fault(step: string): Promise<void>;
  /** `text` with the state directory and pool paths replaced (tool output reaching API clients). */
  redact(text: string): string;
  /** A fresh path in the staging area, named after this process so the reconciler can tell live work from leftovers. */
  stagingPath(label: string): string;
}

const defaultBasesDir = (): string => fileURLToPath(new URL('../../../bases/', import.meta.url));

export async function openContext(options: EngineOptions): Promise<EngineContext> {
  const stateDir = options.stateDir;
  // 0700: the state directory holds the database, the token and every box's run state;
  // no host user but root has business there. An existing directory is tightened too.
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  chmodSync(stateDir, 0o700);
  const pool = await openPool({
    stateDir,
    ...(options.poolPath !== undefined ? { poolPath: options.poolPath } : {}),
    ...(options.poolImageSizeBytes !== undefined ? { imageSizeBytes: options.poolImageSizeBytes } : {}),
  });
  const paths: Paths = {
    pool: pool.root,
    bases: join(pool.root, 'bases'),
    roots: join(pool.root, 'roots'),
    checkpoints: join(pool.root, 'checkpoints'),
    staging: join(pool.root, 'staging'),
  };
  for (const warning of pool.warnings ?? []) (options.onWarning ?? defaultWarn)(warning);
  const db = openDatabase(join(stateDir, 'zomg.db'));
  return {
    options,
    stateDir,
    paths,
    pool,
    db,
    bases: new BasesRepo(db),
    boxes: new BoxesRepo(db),
    checkpoints: new CheckpointsRepo(db),
    pending: new PendingRepo(db),
    driver: new BtrfsDriver(),
    locks: new LockManager(join(stateDir, 'locks')),
    maintainedBasesDir: options.maintainedBasesDir ?? defaultBasesDir(),
    now: options.now ?? (() => new Date()),
    async fault(step) {
      await options.faultPoint?.(step);
    },
    redact(text) {
      return text.split(paths.pool).join('<pool>').split(stateDir).join('<state>');
    },
    stagingPath(label) {
      return join(paths.staging, `${process.pid}-${label}-${randomBytes(4).toString('hex')}`);
    },
  };
}

export const isoNow = (ctx: EngineContext): string => ctx.now().toISOString().replace(/\.\d{3}Z$/, 'Z');
