/**
 * What zomg can do, as one interface. The engine implements it in-process; the CLI's
 * remote client implements it over HTTP; the CLI renders the same results in both modes.
 */
import type { Readable, Writable } from 'node:stream';
import type { BoxProcess, CopyToBoxOptions, ReadLogsOptions, TerminalRequest, TerminalSession } from './console-protocol.js';
import type { DiffEntry } from './diff.js';
import type { BoxRef } from './refs.js';
import type { BaseDetails, BaseSummary, BaseVersion, Box, BuilderName, Snapshot, DiffStatus, FileDiff, InstallOutcome, ProgressFn } from './types.js';
import type { Volume, VolumeBackup, VolumeDiffStatus, VolumeSnapshot } from './types.js';
import type { VolumeRef } from './volumes.js';

export interface CreateBoxOptions {
  /** Start the box after creating it (default true). */
  start?: boolean;
  base?: string;
  fork?: BoxRef;
  tags?: Record<string, string>;
  environment?: Record<string, string>;
  /** Opt out of the default security profile (`--privileged`). */
  privileged?: boolean;
  /** `--cpus 1.5` */
  cpus?: string | number;
  /** `--memory 512m` (a size with a unit, or bytes) */
  memory?: string | number;
  /** `--pids 256` */
  pids?: string | number;
  /** `--publish [IP:]HOST:BOX[/tcp|udp]`, repeatable */
  publish?: string[];
  /** Data volumes to mount (`name` may be `project:name`); a fork adds clones of the source's own. */
  dataMounts?: DataMountSpec[];
}

/** A volume to mount in a box: `name` (or `project:name`) at the absolute `path`. */
export interface DataMountSpec {
  name: string;
  path: string;
  read_only?: boolean;
}

export interface CreateVolumeOptions {
  /** Clone this volume (O(1)) instead of creating an empty one. */
  from?: VolumeRef;
  /** With `from`: clone this snapshot of it. */
  fromSnapshot?: string;
}

export interface CreateBackupOptions {
  /** The target URL, e.g. file:///srv/backups. */
  to: string;
  name?: string;
}

export interface RestoreBackupOptions {
  /** The target URL the backup is read from. */
  from: string;
  /** The backed-up volume (as named at the target: its project and name). */
  source: VolumeRef;
  /** The backup; default the newest of the volume at the target. */
  backup?: string;
  /** The new volume to create. */
  to: VolumeRef;
}

/** Paging of a listing (see core/paging.ts): at most `maxResults` items after `pageToken`. */
export interface ListOptions {
  maxResults?: number;
  /** The `next_page_token` of the previous page. */
  pageToken?: string;
}

export interface ListBoxesOptions extends ListOptions {
  /** Undefined = all projects. */
  project?: string;
  prefix?: string;
  tags?: Record<string, string>;
}

export interface ImportBaseOptions {
  parent?: string;
  onProgress?: ProgressFn;
  signal?: AbortSignal;
  /** Size of the upload when known, for progress. */
  totalBytes?: number;
}

export interface InstallBaseOptions {
  update?: boolean;
  onProgress?: ProgressFn;
  signal?: AbortSignal;
}

export interface BuildBaseOptions {
  /**
   * The build context: a directory (default: the current directory), or a tar stream of one
   * (what the HTTP API receives from a remote CLI).
   */
  context?: string | Readable;
  /**
   * The Dockerfile. With a directory context: a path (default `<context>/Dockerfile`). With a
   * tar context: a relative path inside it (default `Dockerfile`).
   */
  dockerfile?: string;
  /** Default: the first of docker, podman, nerdctl that is installed and answering. */
  builder?: BuilderName;
  /** Build output arrives as `{phase: 'build', line}`, as produced. */
  onProgress?: ProgressFn;
  signal?: AbortSignal;
}

export interface CreateSnapshotOptions {
  name?: string;
  description?: string;
}

export interface DiffStatusOptions {
  /** The snapshot to compare against (default: the most recent). */
  against?: string;
  /** Compare against another snapshot instead of the live root. */
  to?: string;
  signal?: AbortSignal;
}

/** A status diff without its changes: what is known before the first change. */
export type DiffStatusHead = Omit<DiffStatus, 'changes'>;

/** A volume's status diff without its changes. */
export type VolumeDiffStatusHead = Omit<VolumeDiffStatus, 'changes'>;

/**
 * Receives a status diff as it is computed: `head` once, then each change in path order,
 * its path as raw bytes (each face encodes it as it prints it). A returned promise is
 * awaited before the next call (backpressure); return nothing when there is no need to wait.
 * `H` is what the diff compares: a box's root (DiffStatusHead) or a volume (VolumeDiffStatusHead).
 */
export interface DiffSink<H> {
  head(head: H): void | Promise<void>;
  change(entry: DiffEntry): void | Promise<void>;
}

export type DiffStatusSink = DiffSink<DiffStatusHead>;
export type VolumeDiffStatusSink = DiffSink<VolumeDiffStatusHead>;

export interface ExecRequest {
  command: string[];
  env?: Record<string, string>;
  cwd?: string;
  /** Run through `/bin/sh -c`. */
  shell?: boolean;
  user?: string;
}

export interface ExecIO {
  stdin?: Readable;
  stdout: Writable;
  stderr: Writable;
  signal?: AbortSignal;
}

export interface LifecycleResult {
  box: Box;
  /** False when the box already was in the requested state. */
  changed: boolean;
}

export interface PoolInfo {
  root: string;
  mounted: 'loop' | 'existing';
}

export interface ZomgService {
  // boxes
  createBox(ref: BoxRef, options?: CreateBoxOptions): Promise<Box>;
  listBoxes(options?: ListBoxesOptions): Promise<Box[]>;
  getBox(ref: BoxRef): Promise<Box>;
  deleteBox(ref: BoxRef): Promise<void>;
  /** Replaces the tags and/or environment given. */
  updateBox(ref: BoxRef, fields: { tags?: Record<string, string>; environment?: Record<string, string> }): Promise<Box>;

  stopBox(ref: BoxRef): Promise<LifecycleResult>;
  resumeBox(ref: BoxRef): Promise<LifecycleResult>;
  /** Runs a command in a running box, streaming its input and output; resolves with its exit code. */
  exec(ref: BoxRef, request: ExecRequest, io: ExecIO): Promise<{ exit_code: number }>;
  /** Runs a command detached; its output goes to /tmp/boxes/exec/<pid>.log in the box. */
  execBackground(ref: BoxRef, request: ExecRequest): Promise<{ pid: number; log_path: string }>;

  // terminals, files, processes and logs (core/console-protocol.ts)
  /** A command (default: a login shell) on a new terminal in a running box. */
  openTerminal(ref: BoxRef, request: TerminalRequest): Promise<TerminalSession>;
  /** A tar stream of `path` in the box (one top-level entry, the source's name), written to `out` (not ended). */
  copyFromBox(ref: BoxRef, path: string, out: Writable, options?: { signal?: AbortSignal }): Promise<void>;
  /** Extracts the tar stream `tar` at `path` in the box: into it when a directory, else under that name. */
  copyToBox(ref: BoxRef, path: string, tar: Readable, options?: CopyToBoxOptions): Promise<void>;
  listProcesses(ref: BoxRef): Promise<BoxProcess[]>;
  /** The log of a `--bg` exec, written to `out` (not ended); with `follow`, until the process ends. */
  readLogs(ref: BoxRef, pid: number, out: Writable, options?: ReadLogsOptions): Promise<void>;

  // bases
  listBases(options?: ListOptions): Promise<BaseSummary[]>;
  inspectBase(name: string, options?: { tag?: string }): Promise<BaseDetails>;
  importBase(name: string, source: string | Readable, options?: ImportBaseOptions): Promise<BaseVersion>;
  installBase(name: string, options?: InstallBaseOptions): Promise<InstallOutcome>;
  /** Builds a Dockerfile with a container engine into a new version of `name` (kind `build`). */
  buildBase(name: string, options?: BuildBaseOptions): Promise<BaseVersion>;
  /** Saves the box's current root as a new version of `name` (kind `save`): a read-only snapshot, O(1). */
  saveBase(name: string, box: BoxRef): Promise<BaseVersion>;
  deleteBaseAlias(name: string): Promise<void>;
  deleteBaseVersion(version: string): Promise<void>;

  // snapshots (checkpoints in the API)
  createSnapshot(ref: BoxRef, options?: CreateSnapshotOptions): Promise<Snapshot>;
  listSnapshots(ref: BoxRef, options?: ListOptions): Promise<Snapshot[]>;
  getSnapshot(ref: BoxRef, name: string): Promise<Snapshot>;
  restoreSnapshot(ref: BoxRef, name: string): Promise<Snapshot>;
  deleteSnapshot(ref: BoxRef, name: string): Promise<void>;

  // diffs
  diffStatus(ref: BoxRef, options?: DiffStatusOptions): Promise<DiffStatus>;
  /** diffStatus delivered incrementally: nothing holds the whole list (very large diffs). */
  diffStatusStream(ref: BoxRef, sink: DiffStatusSink, options?: DiffStatusOptions): Promise<void>;
  diffFile(ref: BoxRef, path: string, options?: { against?: string }): Promise<FileDiff>;

  // data volumes (SPEC §7)
  createVolume(ref: VolumeRef, options?: CreateVolumeOptions): Promise<Volume>;
  /** Undefined project = every project. */
  listVolumes(options?: { project?: string }): Promise<Volume[]>;
  getVolume(ref: VolumeRef): Promise<Volume>;
  deleteVolume(ref: VolumeRef): Promise<void>;
  /** Mounts a volume in a stopped box (refused while it runs). */
  attachVolume(box: BoxRef, mount: DataMountSpec): Promise<Box>;
  detachVolume(box: BoxRef, name: string): Promise<Box>;
  createVolumeSnapshot(ref: VolumeRef, options?: CreateSnapshotOptions): Promise<VolumeSnapshot>;
  listVolumeSnapshots(ref: VolumeRef): Promise<VolumeSnapshot[]>;
  restoreVolumeSnapshot(ref: VolumeRef, name: string): Promise<VolumeSnapshot>;
  deleteVolumeSnapshot(ref: VolumeRef, name: string): Promise<void>;
  volumeDiffStatus(ref: VolumeRef, options?: DiffStatusOptions): Promise<VolumeDiffStatus>;
  /** volumeDiffStatus delivered incrementally, as diffStatusStream is for boxes. */
  volumeDiffStatusStream(ref: VolumeRef, sink: VolumeDiffStatusSink, options?: DiffStatusOptions): Promise<void>;
  volumeDiffFile(ref: VolumeRef, path: string, options?: { against?: string }): Promise<FileDiff>;
  createBackup(ref: VolumeRef, options: CreateBackupOptions): Promise<VolumeBackup>;
  /** The backups at a target: of one project (and volume) when given. */
  listBackups(from: string, options?: { project?: string; volume?: string }): Promise<VolumeBackup[]>;
  restoreBackup(options: RestoreBackupOptions): Promise<Volume>;

  close(): Promise<void>;
}
