/**
 * The pool's layout and every subvolume operation on it — the one file that knows where
 * things live inside the pool (SPEC §3). Callers name subvolumes by typed ids
 * (`{kind: 'root', box}`, `{kind: 'snapshot', box, name}`, …) and never build a pool
 * path themselves; host paths leave this file only for the runtime (bind mounts) and are
 * never shown to API clients.
 *
 * Layout:
 *   bases/<version>                      read-only base versions
 *   roots/<box-id>                       writable box roots
 *   checkpoints/<box-id>/<name>          read-only box snapshots
 *   volumes/<volume-id>                  data volumes
 *   volume-checkpoints/<volume-id>/<n>   read-only volume snapshots
 *   volume-backups/<volume-id>/<n>       read-only parents of incremental backups
 *   volumes/_system/{bin,all}            the system volumes every box mounts
 *   volumes/_projects/<project>/{proj,home}  the project volumes
 *   staging/<pid>-<label>-<hex>          work in progress of process <pid>
 *   staging/podman                       the container engine's store (builds)
 *
 * Crash safety: a new subvolume is built in staging and placed by rename; a swap (restore)
 * renames the target aside (`<target>@restore-<pid>-<hex>`) and the staged one into place.
 * The reconciler reads the layout back with the `list*` methods.
 */
import { fsPromises, nonceHex, randomHex } from '../system/builtins.js';
import { mkdirSync, readdirSync, rmdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { PoolFullError } from '../core/errors.js';
import { isErrno } from '../system/fs.js';
import type { StorageDriver } from './driver.js';

export type SubvolumeId =
  | { kind: 'base'; version: string }
  | { kind: 'root'; box: string }
  | { kind: 'snapshot'; box: string; name: string }
  | { kind: 'volume'; volume: string }
  | { kind: 'volume-snapshot'; volume: string; name: string }
  | { kind: 'volume-backup'; volume: string; name: string }
  | { kind: 'system'; name: 'bin' | 'all' }
  | { kind: 'project'; project: string; name: 'proj' | 'home' }
  | { kind: 'staging'; name: string };

export type StagingId = Extract<SubvolumeId, { kind: 'staging' }>;

/** A target renamed aside during a swap; the reconciler finishes or undoes a swap cut short from it. */
export interface AsideEntry {
  /** The subvolume the aside copy belongs to. */
  target: SubvolumeId;
  /** The aside name (for `deleteAside` / `restoreAside`). */
  name: string;
  /** The process that renamed it aside. */
  pid: number;
}

const ASIDE_MARK = '@restore-';
/** The container engine's store inside staging (never a leftover). */
const PODMAN_STORE = 'podman';

/** The container engine's store of the pool at `poolRoot`. */
export const podmanStoreOf = (poolRoot: string): string => join(poolRoot, 'staging', PODMAN_STORE);

export const LAYERS = ['bases', 'roots', 'checkpoints', 'volumes', 'volume-checkpoints', 'volume-backups', 'staging'] as const;

/** A path component the layout may use: never empty, `.`, `..`, or holding `/` or NUL (a programmer error otherwise). */
function part(value: string): string {
  if (value === '' || value === '.' || value === '..' || value.includes('/') || value.includes('\0')) {
    throw new Error(`invalid pool path component ${JSON.stringify(value)}`);
  }
  return value;
}

/**
 * Makes the directory that holds a subvolume (one level under its layer). A full pool can
 * refuse even that: ENOSPC (which a recursive mkdir may report as ENOENT) is the pool full.
 */
function ensureDir(dir: string): void {
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (err) {
    if (isErrno(err, 'EEXIST')) return;
    if (isErrno(err, 'ENOSPC')) throw new PoolFullError(undefined, { cause: err });
    if (isErrno(err, 'ENOENT')) {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      return;
    }
    throw err;
  }
}

function names(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) return [];
    throw err;
  }
}

export interface SwapSteps {
  /** Called between the steps (fault injection in tests). */
  fault?: (step: string) => void | Promise<void>;
  /** Records the swap (a metadata commit); runs after the staged subvolume is in place. */
  commit: () => void | Promise<void>;
}

export class Pool {
  constructor(
    /** The pool's root directory on the host. */
    readonly root: string,
    readonly driver: StorageDriver,
  ) {}

  /** The host path of a subvolume: for the runtime's bind mounts and the storage tools only. */
  hostPath(id: SubvolumeId): string {
    const r = this.root;
    switch (id.kind) {
      case 'base':
        return join(r, 'bases', part(id.version));
      case 'root':
        return join(r, 'roots', part(id.box));
      case 'snapshot':
        return join(r, 'checkpoints', part(id.box), part(id.name));
      case 'volume':
        return join(r, 'volumes', part(id.volume));
      case 'volume-snapshot':
        return join(r, 'volume-checkpoints', part(id.volume), part(id.name));
      case 'volume-backup':
        return join(r, 'volume-backups', part(id.volume), part(id.name));
      case 'system':
        return join(r, 'volumes', '_system', id.name);
      case 'project':
        return join(r, 'volumes', '_projects', part(id.project), id.name);
      case 'staging':
        return join(r, 'staging', part(id.name));
    }
  }

  /** The directory that holds the subvolume (created on demand for the per-box/per-volume ones). */
  private parentDir(id: SubvolumeId): string {
    return join(this.hostPath(id), '..');
  }

  /** The host path of the container engine's build store. */
  get podmanStore(): string {
    return podmanStoreOf(this.root);
  }

  /** `text` with the pool's host path replaced by `<pool>` (tool output that may reach API clients). */
  redact(text: string): string {
    return text.split(this.root).join('<pool>');
  }

  /** True when the subvolume (or at least a directory entry of that name) exists. */
  exists(id: SubvolumeId): boolean {
    try {
      statSync(this.hostPath(id));
      return true;
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR')) return false;
      throw err;
    }
  }

  /** A fresh staging id owned by this process (the reconciler keeps it while the process lives). */
  newStaging(label: string): StagingId {
    return { kind: 'staging', name: `${process.pid}-${label.replace(/[^a-z0-9-]/gi, '_')}-${nonceHex(4)}` };
  }

  /** Creates an empty subvolume at `id` (its parent directories are made). */
  async create(id: SubvolumeId): Promise<void> {
    ensureDir(this.parentDir(id));
    await this.driver.createSubvolume(this.hostPath(id));
  }

  /**
   * Snapshots `source` to `dest` (which must not exist), nested subvolumes included. A
   * read-only snapshot is taken straight in its final directory: a read-only subvolume
   * cannot change directory afterwards.
   */
  async snapshot(source: SubvolumeId, dest: SubvolumeId, options: { readOnly: boolean; withoutNested?: boolean }): Promise<{ nested: number }> {
    ensureDir(this.parentDir(dest));
    return this.driver.snapshot(this.hostPath(source), this.hostPath(dest), options);
  }

  /** Moves a finished staging subvolume to `dest` (a rename) and optionally makes it read-only. */
  async place(staged: StagingId, dest: SubvolumeId, options: { readOnly: boolean }): Promise<void> {
    ensureDir(this.parentDir(dest));
    await fsPromises().rename(this.hostPath(staged), this.hostPath(dest));
    if (options.readOnly) await this.driver.setReadOnly(this.hostPath(dest), true);
  }

  /**
   * Replaces `target` with the staged subvolume, atomically as seen after a crash: the
   * target is renamed aside, the staged one renamed into place, then `commit` records it.
   * On failure every step is undone (the target is whole again). Returns the aside name,
   * which the caller deletes (`deleteAside`) once it no longer needs the old tree; a crash
   * before that leaves it to the reconciler.
   */
  async swap(target: SubvolumeId, staged: StagingId, steps: SwapSteps): Promise<string> {
    const path = this.hostPath(target);
    const asideName = `${part(path.slice(path.lastIndexOf('/') + 1))}${ASIDE_MARK}${process.pid}-${randomHex(3)}`;
    const aside = join(this.parentDir(target), asideName);
    await fsPromises().rename(path, aside);
    try {
      await steps.fault?.('restore:aside');
      await fsPromises().rename(this.hostPath(staged), path);
      try {
        await steps.fault?.('restore:placed');
        await steps.commit();
        await steps.fault?.('restore:committed');
      } catch (err) {
        await fsPromises().rename(path, this.hostPath(staged));
        throw err;
      }
    } catch (err) {
      await fsPromises().rename(aside, path);
      throw err;
    }
    return asideName;
  }

  /** Deletes the aside copy left by `swap`. */
  async deleteAside(target: SubvolumeId, asideName: string): Promise<void> {
    await this.driver.deleteSubvolume(join(this.parentDir(target), part(asideName)));
  }

  /** Puts an aside copy back in place of its (missing) target: undoes a swap cut short before its commit. */
  async restoreAside(entry: AsideEntry): Promise<void> {
    await fsPromises().rename(join(this.parentDir(entry.target), entry.name), this.hostPath(entry.target));
  }

  /**
   * Deletes a subvolume and everything nested in it; missing is not an error. With
   * `waitForSpace`, returns once the filesystem has reclaimed the space. The per-box and
   * per-volume directory is removed when it becomes empty.
   */
  async delete(id: SubvolumeId, options: { waitForSpace?: boolean; noneNested?: boolean } = {}): Promise<void> {
    await this.driver.deleteSubvolume(this.hostPath(id), options);
    if (id.kind === 'snapshot' || id.kind === 'volume-snapshot' || id.kind === 'volume-backup') {
      try {
        rmdirSync(this.parentDir(id));
      } catch (err) {
        if (!isErrno(err, 'ENOENT', 'ENOTEMPTY', 'EEXIST')) throw err;
      }
    }
  }

  /** The data-less change stream from `parent` to `child` (both read-only). */
  sendNoData(parent: SubvolumeId, child: SubvolumeId, options: { signal?: AbortSignal } = {}): Readable {
    return this.driver.sendNoData(this.hostPath(parent), this.hostPath(child), options);
  }

  /**
   * The change stream WITH data of `id` (read-only): whole, or with `parent` (read-only,
   * same pool) only what changed since it. For backups.
   */
  send(id: SubvolumeId, options: { parent?: SubvolumeId; signal?: AbortSignal } = {}): Readable {
    if (!this.driver.send) throw new Error(`the ${this.driver.name} driver cannot send subvolumes`);
    return this.driver.send(this.hostPath(id), {
      ...(options.parent !== undefined ? { parent: this.hostPath(options.parent) } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
  }

  /**
   * Replays a stream into the staging subvolume `into` (made with `create`): the received,
   * read-only subvolume appears inside it under the name the stream carries. Incremental
   * streams find their parent among the ones received before.
   */
  async receive(input: Readable, into: StagingId, options: { signal?: AbortSignal } = {}): Promise<void> {
    if (!this.driver.receive) throw new Error(`the ${this.driver.name} driver cannot receive streams`);
    await this.driver.receive(input, this.hostPath(into), options);
  }

  /** True when a stream received into `into` produced the subvolume `name`. */
  hasReceived(into: StagingId, name: string): Promise<boolean> {
    return this.driver.isSubvolume(join(this.hostPath(into), part(name)));
  }

  /** A writable snapshot of the subvolume `name` received into `into`, at `dest` (staging). */
  async snapshotReceived(into: StagingId, name: string, dest: StagingId): Promise<void> {
    await this.driver.snapshot(join(this.hostPath(into), part(name)), this.hostPath(dest), { readOnly: false });
  }

  /** Bytes of the tree (a full walk: O(files)). */
  sizeBytes(id: SubvolumeId): Promise<number> {
    return this.driver.sizeBytes(this.hostPath(id));
  }

  /** Subvolumes nested inside `id` (host paths; empty for almost every tree). */
  listNested(id: SubvolumeId): Promise<string[]> {
    return this.driver.listNested(this.hostPath(id));
  }

  /**
   * Runs `fn` with a temporary read-only snapshot of `source` in staging, deleted
   * afterwards whatever happens (a crash leaves it to the reconciler: its name carries
   * this process's pid). `withoutNested`: for a tree diff, which leaves nested subvolumes
   * out anyway (see SnapshotOptions).
   */
  async withTemporarySnapshot<T>(source: SubvolumeId, label: string, fn: (snapshot: StagingId) => Promise<T>, options: { withoutNested?: boolean } = {}): Promise<T> {
    const tmp = this.newStaging(label);
    const { nested } = await this.snapshot(source, tmp, { readOnly: true, ...options });
    try {
      return await fn(tmp);
    } finally {
      // The caller's result (or error) is what counts; a failed delete is retried once and
      // otherwise left to the reconciler. Read-only since it was made, it holds no nested
      // subvolume unless the snapshot placed some.
      const options = { noneNested: nested === 0 };
      await this.delete(tmp, options).catch(() => this.delete(tmp)).catch(() => undefined);
    }
  }

  // --- reading the layout back (the reconciler) ----------------------------------------

  listBases(): string[] {
    return names(join(this.root, 'bases'));
  }

  /** Box roots (aside copies excluded: see `listAsides`). */
  listRoots(): string[] {
    return names(join(this.root, 'roots')).filter((n) => !n.includes(ASIDE_MARK));
  }

  /** Box snapshots as `{box, name}`, plus per-box directories that hold none. */
  listSnapshots(): Array<{ box: string; name: string }> {
    return this.listTwoLevel('checkpoints');
  }

  listVolumes(): string[] {
    return names(join(this.root, 'volumes')).filter((n) => !n.startsWith('_') && !n.includes(ASIDE_MARK));
  }

  listVolumeSnapshots(): Array<{ box: string; name: string }> {
    return this.listTwoLevel('volume-checkpoints');
  }

  listVolumeBackups(): Array<{ box: string; name: string }> {
    return this.listTwoLevel('volume-backups');
  }

  private listTwoLevel(layer: string): Array<{ box: string; name: string }> {
    const out: Array<{ box: string; name: string }> = [];
    for (const box of names(join(this.root, layer))) {
      for (const name of names(join(this.root, layer, box))) out.push({ box, name });
    }
    return out;
  }

  /** Removes empty per-box / per-volume directories of a two-level layer. */
  pruneEmptyDirs(): void {
    for (const layer of ['checkpoints', 'volume-checkpoints', 'volume-backups']) {
      for (const dir of names(join(this.root, layer))) {
        try {
          rmdirSync(join(this.root, layer, dir));
        } catch (err) {
          if (!isErrno(err, 'ENOENT', 'ENOTEMPTY', 'EEXIST', 'ENOTDIR')) throw err;
        }
      }
    }
  }

  /** Staging entries with the pid that owns them (undefined for foreign names), the build store excluded. */
  listStaging(): Array<{ id: StagingId; pid: number | undefined }> {
    return names(join(this.root, 'staging'))
      .filter((n) => n !== PODMAN_STORE)
      .map((n) => {
        const pid = Number.parseInt(n, 10);
        return { id: { kind: 'staging' as const, name: n }, pid: Number.isInteger(pid) && pid > 0 ? pid : undefined };
      });
  }

  /** Targets renamed aside by swaps (roots and volumes). */
  listAsides(): AsideEntry[] {
    const out: AsideEntry[] = [];
    const scan = (layer: 'roots' | 'volumes', make: (name: string) => SubvolumeId): void => {
      for (const n of names(join(this.root, layer))) {
        const at = n.indexOf(ASIDE_MARK);
        if (at < 0) continue;
        out.push({ target: make(n.slice(0, at)), name: n, pid: Number.parseInt(n.slice(at + ASIDE_MARK.length), 10) });
      }
    };
    scan('roots', (box) => ({ kind: 'root', box }));
    scan('volumes', (volume) => ({ kind: 'volume', volume }));
    return out;
  }
}
