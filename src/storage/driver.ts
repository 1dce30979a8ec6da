/**
 * The storage driver interface: everything zomg asks of the filesystem that holds boxes,
 * snapshots and bases. Callers branch on `capabilities`, never on a driver's name.
 * Paths are absolute host paths inside the pool; they never reach the API.
 */
import type { Readable } from 'node:stream';
import type { TreeReader } from './diff/tree.js';

export interface DriverCapabilities {
  /** Snapshots are copy-on-write clones whose cost does not depend on the tree size. */
  instantSnapshots: boolean;
  /** Subvolumes can be flagged read-only. */
  readOnly: boolean;
  /** `send` can produce an incremental, data-less change stream between two read-only snapshots. */
  sendStream: boolean;
}

export interface SnapshotOptions {
  readOnly?: boolean;
  /**
   * Leave nested subvolumes out: where each was, btrfs shows an empty placeholder directory
   * with a device of its own, which a tree diff treats as absent just like the subvolume.
   * One process instead of two (no listing of the nested ones).
   */
  withoutNested?: boolean;
}

export interface StorageDriver {
  readonly name: string;
  readonly capabilities: DriverCapabilities;

  /** Creates an empty subvolume at `path` (its parent directory must exist). */
  createSubvolume(path: string): Promise<void>;

  /**
   * Snapshots `source` to `dest` (which must not exist). Nested subvolumes inside `source`
   * are snapshotted too and placed at the same paths, so their content is captured; with
   * `readOnly` every one of them is made read-only. Returns how many nested ones it placed.
   */
  snapshot(source: string, dest: string, options?: SnapshotOptions): Promise<{ nested: number }>;

  /**
   * Deletes the subvolume at `path` and every subvolume nested inside it. Missing is not an
   * error. With `waitForSpace`, returns only once the filesystem has reclaimed its space
   * (after a failure that filled the pool, so the next operation finds the room). With
   * `noneNested` the caller knows none is nested (a read-only snapshot made without any:
   * nothing can be created inside it), and the listing is skipped.
   */
  deleteSubvolume(path: string, options?: { waitForSpace?: boolean; noneNested?: boolean }): Promise<void>;

  setReadOnly(path: string, readOnly: boolean): Promise<void>;
  isReadOnly(path: string): Promise<boolean>;

  /** True when `path` is a subvolume (not merely a directory). */
  isSubvolume(path: string): Promise<boolean>;

  /** Subvolumes nested anywhere below `path` (absolute paths, parents before children). */
  listNested(path: string): Promise<string[]>;

  /** Bytes used by the tree at `path`. Costs O(files): call it off the hot path. */
  sizeBytes(path: string): Promise<number>;

  /**
   * The binary change stream from `parent` to `child` (both read-only snapshots), without
   * file data. Only when `capabilities.sendStream`.
   */
  sendNoData(parent: string, child: string, options?: { signal?: AbortSignal }): Readable;

  /**
   * The change stream WITH file data: all of `child`, or with `parent` the change since it
   * (both read-only). Only when `capabilities.sendStream`.
   */
  send?(child: string, options?: { parent?: string; signal?: AbortSignal }): Readable;

  /** Replays a `send` stream into directory `dir` (a read-only received subvolume appears there). */
  receive?(input: Readable, dir: string, options?: { signal?: AbortSignal }): Promise<void>;

  /**
   * Every path (relative to `root`, no leading '/') of inode `ino` in the read-only tree at
   * `root`, when the driver can resolve inode numbers to names without a walk.
   */
  inodePaths?(root: string, ino: number, options: { signal?: AbortSignal }): Promise<Buffer[]>;

  /**
   * The tree searches with which a diff compares two read-only subvolumes' own items,
   * before it tries the send (storage/diff/tree.ts), when the driver can make them.
   */
  readonly treeReader?: TreeReader;
}
