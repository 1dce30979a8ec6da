/**
 * The composition root: `createEngine()` opens the state directory, the pool and the
 * database, reconciles them, and returns the one object both faces (CLI and HTTP) drive.
 */
import { existsSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import type { BoxProcess, CopyToBoxOptions, ReadLogsOptions, TerminalRequest, TerminalSession } from '../core/console-protocol.js';
import { ConflictError } from '../core/errors.js';
import { BwrapRuntime } from '../runtime/bwrap.js';
import { LockManager } from '../system/lock.js';
import { type ClosePoolResult, closePool as closeStoragePool } from '../storage/pool.js';
import { baseKey, snapshotKey, pageOf } from '../core/paging.js';
import type { BoxRef } from '../core/refs.js';
import type {
  BuildBaseOptions,
  CreateBoxOptions,
  CreateSnapshotOptions,
  DiffStatusOptions,
  DiffStatusSink,
  VolumeDiffStatusSink,
  ExecIO,
  ExecRequest,
  ImportBaseOptions,
  InstallBaseOptions,
  LifecycleResult,
  ListBoxesOptions,
  ListOptions,
  PoolInfo,
  ZomgService,
} from '../core/service.js';
import type { BaseDetails, BaseSummary, BaseVersion, Box, Snapshot, DiffStatus, FileDiff, InstallOutcome } from '../core/types.js';
import { MUTATIONS_LOCK } from './access.js';
import * as bases from './bases.js';
import * as boxes from './boxes.js';
import * as builds from './builds.js';
import * as files from './files.js';
import * as running from './running.js';
import * as terminals from './terminals.js';
import { type EngineContext, type EngineOptions, openContext } from './context.js';
import { type ReconcileReport, reconcile, reconcileNeeded } from './reconcile.js';
import { computePendingSizes, sizesSettled } from './sizes.js';
import * as snapshots from './snapshots.js';
import * as volumes from './volumes.js';
import type { CreateBackupOptions, CreateVolumeOptions, DataMountSpec, RestoreBackupOptions } from '../core/service.js';
import type { Volume, VolumeBackup, VolumeDiffStatus, VolumeSnapshot } from '../core/types.js';
import type { VolumeRef } from '../core/volumes.js';

export type { EngineOptions } from './context.js';

export class Engine implements ZomgService {
  private repairTimer: NodeJS.Timeout | undefined;

  constructor(readonly ctx: EngineContext) {}

  /**
   * A long-lived engine (the server) repairs what crashes of other processes (CLI commands
   * killed mid-way) leave, when they leave something, every `everyMs`.
   */
  repairPeriodically(everyMs: number): void {
    this.repairTimer ??= setInterval(() => {
      if (this.reconcileNeeded()) void this.reconcile().catch(() => undefined);
    }, everyMs);
    this.repairTimer.unref();
  }

  get pool(): PoolInfo {
    return { root: this.ctx.pool.root, mounted: this.ctx.poolMount };
  }

  async createBox(ref: BoxRef, options?: CreateBoxOptions): Promise<Box> {
    return boxes.createBox(this.ctx, ref, options);
  }
  async listBoxes(options?: ListBoxesOptions): Promise<Box[]> {
    return boxes.listBoxes(this.ctx, options);
  }
  async getBox(ref: BoxRef): Promise<Box> {
    return boxes.getBox(this.ctx, ref);
  }
  async deleteBox(ref: BoxRef): Promise<void> {
    return boxes.deleteBox(this.ctx, ref);
  }

  async updateBox(ref: BoxRef, fields: { tags?: Record<string, string>; environment?: Record<string, string> }): Promise<Box> {
    return boxes.updateBox(this.ctx, ref, fields);
  }

  async stopBox(ref: BoxRef): Promise<LifecycleResult> {
    return running.stop(this.ctx, ref);
  }
  async resumeBox(ref: BoxRef): Promise<LifecycleResult> {
    return running.resume(this.ctx, ref);
  }
  async exec(ref: BoxRef, request: ExecRequest, io: ExecIO): Promise<{ exit_code: number }> {
    return { exit_code: await running.exec(this.ctx, ref, request, io) };
  }
  async execBackground(ref: BoxRef, request: ExecRequest): Promise<{ pid: number; log_path: string }> {
    return running.execDetached(this.ctx, ref, request);
  }

  async openTerminal(ref: BoxRef, request: TerminalRequest): Promise<TerminalSession> {
    return terminals.openTerminal(this.ctx, ref, request);
  }
  async copyFromBox(ref: BoxRef, path: string, out: Writable, options?: { signal?: AbortSignal }): Promise<void> {
    return files.copyFromBox(this.ctx, ref, path, out, options);
  }
  async copyToBox(ref: BoxRef, path: string, tar: Readable, options?: CopyToBoxOptions): Promise<void> {
    return files.copyToBox(this.ctx, ref, path, tar, options);
  }
  async listProcesses(ref: BoxRef): Promise<BoxProcess[]> {
    return terminals.listProcesses(this.ctx, ref);
  }
  async readLogs(ref: BoxRef, pid: number, out: Writable, options?: ReadLogsOptions): Promise<void> {
    return terminals.readLogs(this.ctx, ref, pid, out, options);
  }

  async listBases(options?: ListOptions): Promise<BaseSummary[]> {
    return pageOf(await bases.listBases(this.ctx), baseKey, options).items;
  }
  async inspectBase(name: string, options?: { tag?: string }): Promise<BaseDetails> {
    return bases.inspectBase(this.ctx, name, options);
  }
  async importBase(name: string, source: string | Readable, options?: ImportBaseOptions): Promise<BaseVersion> {
    return bases.importBase(this.ctx, name, source, options);
  }
  async installBase(name: string, options?: InstallBaseOptions): Promise<InstallOutcome> {
    return bases.installBase(this.ctx, name, options);
  }
  async buildBase(name: string, options?: BuildBaseOptions): Promise<BaseVersion> {
    return builds.buildBase(this.ctx, name, options);
  }
  async saveBase(name: string, box: BoxRef): Promise<BaseVersion> {
    return builds.saveBase(this.ctx, name, box);
  }
  async deleteBaseAlias(name: string): Promise<void> {
    return bases.deleteBaseAlias(this.ctx, name);
  }
  async deleteBaseVersion(version: string): Promise<void> {
    return bases.deleteBaseVersion(this.ctx, version);
  }

  async createSnapshot(ref: BoxRef, options?: CreateSnapshotOptions): Promise<Snapshot> {
    return snapshots.createSnapshot(this.ctx, ref, options);
  }
  async listSnapshots(ref: BoxRef, options?: ListOptions): Promise<Snapshot[]> {
    return pageOf(await snapshots.listSnapshots(this.ctx, ref), snapshotKey, options).items;
  }
  async getSnapshot(ref: BoxRef, name: string): Promise<Snapshot> {
    return snapshots.getSnapshot(this.ctx, ref, name);
  }
  async restoreSnapshot(ref: BoxRef, name: string): Promise<Snapshot> {
    return snapshots.restoreSnapshot(this.ctx, ref, name);
  }
  async deleteSnapshot(ref: BoxRef, name: string): Promise<void> {
    return snapshots.deleteSnapshot(this.ctx, ref, name);
  }

  async diffStatus(ref: BoxRef, options?: DiffStatusOptions): Promise<DiffStatus> {
    // Loaded on first use: the diff machinery is not needed by most commands (CLI start-up time).
    const diffs = await import('./diffs.js');
    return diffs.diffStatus(this.ctx, ref, options);
  }
  async diffStatusStream(ref: BoxRef, sink: DiffStatusSink, options?: DiffStatusOptions): Promise<void> {
    const diffs = await import('./diffs.js');
    return diffs.diffStatusStream(this.ctx, ref, sink, options);
  }
  async diffFile(ref: BoxRef, path: string, options?: { against?: string }): Promise<FileDiff> {
    const diffs = await import('./diffs.js');
    return diffs.diffFile(this.ctx, ref, path, options);
  }

  async createVolume(ref: VolumeRef, options?: CreateVolumeOptions): Promise<Volume> {
    return volumes.createVolume(this.ctx, ref, options);
  }
  async listVolumes(options?: { project?: string }): Promise<Volume[]> {
    return volumes.listVolumes(this.ctx, options);
  }
  async getVolume(ref: VolumeRef): Promise<Volume> {
    return volumes.getVolume(this.ctx, ref);
  }
  async deleteVolume(ref: VolumeRef): Promise<void> {
    return volumes.deleteVolume(this.ctx, ref);
  }
  async attachVolume(box: BoxRef, mount: DataMountSpec): Promise<Box> {
    return volumes.attachVolume(this.ctx, box, mount);
  }
  async detachVolume(box: BoxRef, name: string): Promise<Box> {
    return volumes.detachVolume(this.ctx, box, name);
  }
  async createVolumeSnapshot(ref: VolumeRef, options?: CreateSnapshotOptions): Promise<VolumeSnapshot> {
    return volumes.createVolumeSnapshot(this.ctx, ref, options);
  }
  async listVolumeSnapshots(ref: VolumeRef): Promise<VolumeSnapshot[]> {
    return volumes.listVolumeSnapshots(this.ctx, ref);
  }
  async restoreVolumeSnapshot(ref: VolumeRef, name: string): Promise<VolumeSnapshot> {
    return volumes.restoreVolumeSnapshot(this.ctx, ref, name);
  }
  async deleteVolumeSnapshot(ref: VolumeRef, name: string): Promise<void> {
    return volumes.deleteVolumeSnapshot(this.ctx, ref, name);
  }
  async volumeDiffStatus(ref: VolumeRef, options?: DiffStatusOptions): Promise<VolumeDiffStatus> {
    return volumes.volumeDiffStatus(this.ctx, ref, options);
  }
  async volumeDiffStatusStream(ref: VolumeRef, sink: VolumeDiffStatusSink, options?: DiffStatusOptions): Promise<void> {
    return volumes.volumeDiffStatusStream(this.ctx, ref, sink, options);
  }
  async volumeDiffFile(ref: VolumeRef, path: string, options?: { against?: string }): Promise<FileDiff> {
    return volumes.volumeDiffFile(this.ctx, ref, path, options);
  }
  async createBackup(ref: VolumeRef, options: CreateBackupOptions): Promise<VolumeBackup> {
    const backups = await import('./volume-backups.js');
    return backups.createBackup(this.ctx, ref, options);
  }
  async listBackups(from: string, options?: { project?: string; volume?: string }): Promise<VolumeBackup[]> {
    const backups = await import('./volume-backups.js');
    return backups.listBackups(this.ctx, from, options);
  }
  async restoreBackup(options: RestoreBackupOptions): Promise<Volume> {
    const backups = await import('./volume-backups.js');
    return backups.restoreBackup(this.ctx, options);
  }

  /** Computes every size still missing (the background job); false when another worker has it. */
  async computeSizes(): Promise<boolean> {
    await sizesSettled();
    return computePendingSizes(this.ctx);
  }

  /** Repairs what crashes left; undefined when mutations are in flight (try again later). */
  async reconcile(): Promise<ReconcileReport | undefined> {
    return reconcile(this.ctx);
  }

  /** True when a crash left something for `reconcile` to repair. */
  reconcileNeeded(): boolean {
    return reconcileNeeded(this.ctx);
  }

  async close(): Promise<void> {
    if (this.repairTimer) clearInterval(this.repairTimer);
    await sizesSettled();
    this.ctx.db.close();
  }
}

/**
 * Opens (and on first use creates) the state directory and pool, then reconciles them:
 * always by default (the server), only when a crash left evidence with `if-needed` (a CLI
 * process), never for background workers.
 */
export async function createEngine(options: EngineOptions): Promise<Engine> {
  const engine = new Engine(await openContext(options));
  const mode = options.reconcile ?? 'always';
  if (mode === 'always' || (mode === 'if-needed' && engine.reconcileNeeded())) await engine.reconcile();
  if (mode === 'always' && options.repairEveryMs !== undefined) engine.repairPeriodically(options.repairEveryMs);
  return engine;
}

/**
 * Unmounts the loopback pool and detaches its loop device. Taken with the pool's mutations
 * lock exclusively (refused while an operation runs); inits left by starts cut short and
 * sandboxes stuck half-way are ended first; refused while boxes run, since their mount
 * namespaces hold the filesystem (the loop device could not be detached).
 */
export async function closePool(stateDir: string): Promise<ClosePoolResult> {
  if (!existsSync(stateDir)) return closeStoragePool(stateDir);
  const lock = new LockManager(join(stateDir, 'locks')).tryExclusive(MUTATIONS_LOCK);
  if (lock === undefined) {
    throw new ConflictError('ZOMG_POOL_BUSY', 'an operation on the pool is in progress', { hint: 'wait for it to finish, then try again' });
  }
  try {
    const runtime = new BwrapRuntime(stateDir);
    await runtime.recoverAll();
    const running = runtime.runningIds();
    if (running.length > 0) {
      throw new ConflictError('ZOMG_POOL_BUSY', `${running.length} box${running.length === 1 ? ' is' : 'es are'} running on this pool`, {
        hint: 'stop them first (zomg list -a shows which)',
      });
    }
    await runtime.releasePool(join(realpathSync(stateDir), 'pool'));
    return await closeStoragePool(stateDir);
  } finally {
    lock.release();
  }
}
