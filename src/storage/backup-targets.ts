/**
 * Where volume backups go: targets keyed by URL scheme (only `file://` is built). A target
 * holds, per backup, a btrfs send stream and a JSON manifest next to it:
 *
 *   <dir>/<project>/<volume>/<name>.btrfs   the stream (full, or incremental against `parent`)
 *   <dir>/<project>/<volume>/<name>.json    the manifest (what `backup list` reads)
 *
 * Both are written under a hidden temporary name, fsynced and renamed into place, the
 * manifest last: a crash never leaves a half-written stream that a listing shows (a stream
 * without its manifest is invisible, and overwritten by the next backup of that name).
 */
import { nodeCrypto, randomHex } from '../system/builtins.js';
import { constants, createReadStream } from 'node:fs';
import { access, mkdir, open, readFile, readdir, realpath, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { InvalidArgumentError, ToolError, UnprocessableError } from '../core/errors.js';
import { isValidName } from '../core/names.js';
import type { VolumeBackup } from '../core/types.js';
import { isErrno } from '../system/fs.js';
import { isNoSpace } from '../system/run.js';

/** The manifest as stored: the backup, plus the stream's file name and a format number. */
export interface BackupManifest extends VolumeBackup {
  format: 1;
  stream: string;
}

export interface BackupTarget {
  /** The canonical URL (`file://` + the directory's real path): the key of a target. */
  readonly url: string;
  /** Refuses a target that is missing, not a directory, or not writable. */
  checkWritable(): Promise<void>;
  /** Refuses a target that is missing or not a directory. */
  checkReadable(): Promise<void>;
  /** Every backup at the target (of one project, and one volume when given), oldest first. */
  list(filter?: { project?: string; volume?: string }): Promise<BackupManifest[]>;
  /** One backup's manifest, checked against where it lies; undefined when there is none. */
  read(project: string, volume: string, name: string): Promise<BackupManifest | undefined>;
  /** Writes a stream under a temporary name, fsynced, then renames it into place. */
  writeStream(project: string, volume: string, name: string, input: Readable): Promise<{ sha256: string; bytes: number }>;
  /** Writes the manifest (temporary name + rename): from here on the backup is listed. */
  writeManifest(manifest: BackupManifest): Promise<void>;
  /** Removes a backup's files (undo of a backup cut short). */
  remove(project: string, volume: string, name: string): Promise<void>;
  /** Hashes the stream and compares it with its manifest (size and sha256). */
  verify(manifest: BackupManifest): Promise<void>;
  /** The stream of a backup. */
  openStream(manifest: BackupManifest): Readable;
}

type TargetFactory = (url: URL, raw: string) => BackupTarget;

/** The schemes zomg can back up to; a new kind of target is one more entry. */
const SCHEMES: Record<string, TargetFactory> = {
  'file:': (url, raw) => new FileTarget(url, raw),
};

/** Opens the target of a URL such as `file:///srv/backups`. */
export function openBackupTarget(raw: string): BackupTarget {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new InvalidArgumentError(`invalid backup target "${raw}": expected a URL such as file:///srv/backups`, { code: 'ZOMG_INVALID_BACKUP_TARGET' });
  }
  const factory = SCHEMES[url.protocol];
  if (!factory) {
    throw new InvalidArgumentError(`backup targets of scheme "${url.protocol.replace(/:$/, '')}://" are not supported`, {
      code: 'ZOMG_UNSUPPORTED_BACKUP_TARGET',
      hint: `supported: ${Object.keys(SCHEMES).map((s) => `${s}//`).join(', ')} (e.g. file:///srv/backups)`,
    });
  }
  return factory(url, raw);
}

const STREAM_EXT = '.btrfs';
const MANIFEST_EXT = '.json';

class FileTarget implements BackupTarget {
  private readonly dir: string;
  private canonical: string | undefined;

  constructor(url: URL, private readonly raw: string) {
    if (url.host !== '' || url.search !== '' || url.hash !== '') {
      throw new InvalidArgumentError(`invalid backup target "${raw}": a file URL names a local directory, as file:///path`, { code: 'ZOMG_INVALID_BACKUP_TARGET' });
    }
    this.dir = fileURLToPath(url);
  }

  get url(): string {
    return this.canonical ?? `file://${this.dir}`;
  }

  private async resolve(): Promise<void> {
    let st;
    try {
      st = await stat(this.dir);
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR')) {
        throw new InvalidArgumentError(`backup target ${this.raw} does not exist`, { code: 'ZOMG_BACKUP_TARGET_MISSING', hint: `create the directory first (mkdir -p ${this.dir})` });
      }
      throw err;
    }
    if (!st.isDirectory()) {
      throw new InvalidArgumentError(`backup target ${this.raw} is not a directory`, { code: 'ZOMG_BACKUP_TARGET_NOT_DIRECTORY', hint: 'name a directory' });
    }
    this.canonical = `file://${await realpath(this.dir)}`;
  }

  async checkReadable(): Promise<void> {
    await this.resolve();
  }

  async checkWritable(): Promise<void> {
    await this.resolve();
    // access(W_OK) says yes to root on a read-only filesystem: try to write for real.
    const probe = join(this.dir, `.zomg-probe-${process.pid}-${randomHex(4)}`);
    try {
      await access(this.dir, constants.W_OK);
      const fh = await open(probe, 'wx', 0o600);
      await fh.close();
      await unlink(probe);
    } catch (err) {
      if (isErrno(err, 'EACCES', 'EPERM', 'EROFS')) {
        throw new InvalidArgumentError(`backup target ${this.raw} is not writable`, { code: 'ZOMG_BACKUP_TARGET_NOT_WRITABLE', hint: 'pick a directory zomg can write to' });
      }
      throw err;
    }
  }

  private volumeDir(project: string, volume: string): string {
    if (!isValidName(project) || !isValidName(volume)) throw new Error(`invalid backup path component ${project}/${volume}`);
    return join(this.dir, project, volume);
  }

  async list(filter: { project?: string; volume?: string } = {}): Promise<BackupManifest[]> {
    await this.resolve();
    const out: BackupManifest[] = [];
    const projects = filter.project !== undefined ? [filter.project] : (await names(this.dir)).filter(isValidName);
    for (const project of projects) {
      const volumes = filter.volume !== undefined ? [filter.volume] : (await names(join(this.dir, project))).filter(isValidName);
      for (const volume of volumes) {
        for (const file of await names(this.volumeDir(project, volume))) {
          if (!file.endsWith(MANIFEST_EXT) || file.startsWith('.')) continue;
          const name = file.slice(0, -MANIFEST_EXT.length);
          if (!isValidName(name)) continue;
          const m = await this.read(project, volume, name);
          if (m) out.push(m);
        }
      }
    }
    // Oldest first; backups taken within one second are ordered by their place in the chain.
    const depth = (m: BackupManifest): number => {
      let d = 0;
      for (let at: BackupManifest | undefined = m; at?.parent != null && d < out.length; d++) {
        const parent: string = at.parent;
        at = out.find((x) => x.project === m.project && x.volume === m.volume && x.name === parent);
      }
      return d;
    };
    const depths = new Map(out.map((m) => [m, depth(m)]));
    return out.sort(
      (a, b) =>
        a.project.localeCompare(b.project) ||
        a.volume.localeCompare(b.volume) ||
        a.created_at.localeCompare(b.created_at) ||
        (depths.get(a) ?? 0) - (depths.get(b) ?? 0) ||
        a.name.localeCompare(b.name),
    );
  }

  async read(project: string, volume: string, name: string): Promise<BackupManifest | undefined> {
    const path = join(this.volumeDir(project, volume), `${name}${MANIFEST_EXT}`);
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR')) return undefined;
      throw err;
    }
    const where = `${project}/${volume}/${name}`;
    let m: Partial<BackupManifest>;
    try {
      m = JSON.parse(text) as Partial<BackupManifest>;
    } catch {
      throw manifestInvalid(where, 'it is not JSON');
    }
    const ok =
      m.format === 1 &&
      m.project === project &&
      m.volume === volume &&
      m.name === name &&
      m.stream === `${name}${STREAM_EXT}` &&
      (m.kind === 'full' || m.kind === 'incremental') &&
      (m.kind === 'full' ? m.parent === null : typeof m.parent === 'string' && isValidName(m.parent)) &&
      typeof m.sha256 === 'string' &&
      /^[0-9a-f]{64}$/.test(m.sha256) &&
      typeof m.stream_bytes === 'number' &&
      typeof m.created_at === 'string';
    if (!ok) throw manifestInvalid(where, 'its fields do not describe the stream next to it');
    return m as BackupManifest;
  }

  async writeStream(project: string, volume: string, name: string, input: Readable): Promise<{ sha256: string; bytes: number }> {
    const dir = this.volumeDir(project, volume);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const final = join(dir, `${name}${STREAM_EXT}`);
    const tmp = join(dir, `.${name}${STREAM_EXT}.tmp-${process.pid}-${randomHex(4)}`);
    const hash = nodeCrypto().createHash('sha256');
    let bytes = 0;
    const fh = await open(tmp, 'wx', 0o600);
    try {
      try {
        for await (const chunk of input as AsyncIterable<Buffer>) {
          hash.update(chunk);
          bytes += chunk.length;
          let off = 0;
          while (off < chunk.length) off += (await fh.write(chunk, off)).bytesWritten;
        }
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, final);
    } catch (err) {
      input.destroy();
      await unlink(tmp).catch(() => undefined);
      if (isNoSpace(err)) throw new ToolError('ZOMG_BACKUP_TARGET_FULL', `backup target ${this.raw} is full`, { cause: err, hint: 'free space at the target, or back up elsewhere' });
      throw err;
    }
    await syncDir(dir);
    return { sha256: hash.digest('hex'), bytes };
  }

  async writeManifest(manifest: BackupManifest): Promise<void> {
    const dir = this.volumeDir(manifest.project, manifest.volume);
    const tmp = join(dir, `.${manifest.name}${MANIFEST_EXT}.tmp-${process.pid}-${randomHex(4)}`);
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(`${JSON.stringify(manifest, null, 2)}\n`);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, join(dir, `${manifest.name}${MANIFEST_EXT}`));
    await syncDir(dir);
  }

  async remove(project: string, volume: string, name: string): Promise<void> {
    const dir = this.volumeDir(project, volume);
    for (const ext of [MANIFEST_EXT, STREAM_EXT]) await unlink(join(dir, `${name}${ext}`)).catch((err: unknown) => {
      if (!isErrno(err, 'ENOENT')) throw err;
    });
  }

  async verify(m: BackupManifest): Promise<void> {
    const path = join(this.volumeDir(m.project, m.volume), m.stream);
    const where = `${m.project}/${m.volume}/${m.name}`;
    const hash = nodeCrypto().createHash('sha256');
    let bytes = 0;
    try {
      for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
        hash.update(chunk);
        bytes += chunk.length;
      }
    } catch (err) {
      if (isErrno(err, 'ENOENT')) throw corrupt(where, 'its stream file is missing');
      throw err;
    }
    if (bytes !== m.stream_bytes) throw corrupt(where, `its stream has ${bytes} bytes, the manifest says ${m.stream_bytes}`);
    if (hash.digest('hex') !== m.sha256) throw corrupt(where, 'its stream does not match the sha256 in its manifest');
  }

  openStream(m: BackupManifest): Readable {
    return createReadStream(join(this.volumeDir(m.project, m.volume), m.stream), { highWaterMark: 1 << 20 });
  }
}

const manifestInvalid = (where: string, why: string): UnprocessableError =>
  new UnprocessableError('ZOMG_BACKUP_MANIFEST_INVALID', `the manifest of backup ${where} is invalid: ${why}`, { hint: 'the backup cannot be trusted; restore another one' });

export const corrupt = (where: string, why: string): UnprocessableError =>
  new UnprocessableError('ZOMG_BACKUP_CORRUPT', `backup ${where} is corrupt: ${why}`, { hint: 'the backup cannot be restored; restore an older chain, or back up again' });

async function names(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).sort();
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) return [];
    throw err;
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
