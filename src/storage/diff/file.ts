/**
 * One file compared between two trees (a snapshot and a read-only snapshot of the live root),
 * without computing the tree diff. The path is resolved inside each tree as if the tree were
 * `/`: `..` may not climb above the root and symlinks (absolute ones are taken relative to the
 * root, as inside the box) may not leave it. Trees are read-only, so nothing can swap a
 * component between the check and the read.
 */
import { lstatSync, readFileSync, readlinkSync, type Stats } from 'node:fs';
import { BOX_MOUNTS } from '../../core/box-layout.js';
import { InvalidArgumentError, TooLargeError } from '../../core/errors.js';
import type { FileDiff, FileSide } from '../../core/types.js';
import { isErrno } from '../../system/fs.js';
import { resolveInRoot } from '../../system/rootpath.js';
import { readXattrs, statsDiffer } from './verify.js';

const FILE_DIFF_LIMIT_BYTES = 1024 * 1024;

/** Paths that are mounts in a box, not part of its root: rejected, never resolved. */
const EXCLUDED_PREFIXES: readonly string[] = BOX_MOUNTS.map((m) => m.path);

const escapeError = (path: string): InvalidArgumentError =>
  new InvalidArgumentError(`path "${path}" leaves the box root`, { code: 'ZOMG_PATH_ESCAPES', hint: 'name a file inside the box; ".." and symlinks cannot lead outside it' });

/** Lexical checks: absolute, inside the root, not under an excluded mount. Returns the components. */
function checkBoxPath(path: string): string[] {
  if (!path.startsWith('/')) {
    throw new InvalidArgumentError(`path "${path}" is relative: give an absolute path inside the box, e.g. /etc/hostname`, { code: 'ZOMG_INVALID_PATH' });
  }
  if (path.includes('\0')) throw new InvalidArgumentError('path contains a NUL byte', { code: 'ZOMG_INVALID_PATH' });
  const parts: string[] = [];
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (parts.length === 0) throw escapeError(path);
      parts.pop();
    } else parts.push(part);
  }
  rejectExcluded(`/${parts.join('/')}`, path);
  if (parts.length === 0) throw new InvalidArgumentError('"/" is a directory: diff file compares single files (use diff status for trees)', { code: 'ZOMG_NOT_A_FILE' });
  return parts;
}

function rejectExcluded(normalized: string, given: string): void {
  for (const prefix of EXCLUDED_PREFIXES) {
    if (normalized === prefix || normalized.startsWith(`${prefix}/`)) {
      throw new InvalidArgumentError(`path "${given}" is under ${prefix}, a volume mounted into boxes, not part of the root`, {
        code: 'ZOMG_PATH_EXCLUDED',
        hint: 'diffs cover the box root only',
      });
    }
  }
}

const lstatOrNull = (p: string): Stats | null => {
  try {
    return lstatSync(p);
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) return null;
    throw err;
  }
};

/**
 * The host path of `path` inside `root`, following symlinks in the leading components only
 * (the last one is compared as it is): `..` above the root and volume mount points on the
 * way are refused. Null when it does not exist.
 */
function hostPathOf(root: string, path: string): string | null {
  const resolved = resolveInRoot(root, path, {
    followFinal: false,
    onEscape: () => escapeError(path),
    onComponent: (prefix) => rejectExcluded(prefix, path),
  });
  return resolved.stat === undefined ? null : resolved.hostPath;
}

function describe(host: string | null, given: string): { side: FileSide; stat: Stats } | null {
  if (host === null) return null;
  const st = lstatOrNull(host);
  if (st === null) return null;
  if (st.isDirectory()) throw new InvalidArgumentError(`"${given}" is a directory: diff file compares single files (use diff status for trees)`, { code: 'ZOMG_NOT_A_FILE' });
  if (!st.isFile() && !st.isSymbolicLink()) {
    const kind = st.isFIFO() ? 'a fifo' : st.isSocket() ? 'a socket' : st.isCharacterDevice() ? 'a character device' : 'a block device';
    throw new InvalidArgumentError(`"${given}" is ${kind}: only regular files and symlinks can be compared`, { code: 'ZOMG_NOT_A_FILE' });
  }
  if (st.isFile() && st.size > FILE_DIFF_LIMIT_BYTES) {
    throw new TooLargeError('ZOMG_FILE_TOO_LARGE', `"${given}" is ${st.size} bytes; file diffs are limited to 1 MB`);
  }
  const side: FileSide = {
    type: st.isFile() ? 'file' : 'symlink',
    size_bytes: st.size,
    mode: (st.mode & 0o7777).toString(8).padStart(4, '0'),
    uid: st.uid,
    gid: st.gid,
    ...(st.isSymbolicLink() ? { target: readlinkSync(host, 'utf8') } : {}),
  };
  return { side, stat: st };
}

const isBinary = (buf: Buffer): boolean => buf.subarray(0, 8192).includes(0) || !Buffer.from(buf.toString('utf8'), 'utf8').equals(buf);

/** Compares `path` in `oldRoot` (the snapshot) and `newRoot` (the current state). */
export async function diffFile(oldRoot: string, newRoot: string, path: string): Promise<FileDiff> {
  checkBoxPath(path);
  const oldHost = hostPathOf(oldRoot, path);
  const newHost = hostPathOf(newRoot, path);
  const previous = describe(oldHost, path);
  const current = describe(newHost, path);
  const base = { path, current: current?.side ?? null, previous: previous?.side ?? null, diff: null, binary: false };
  if (!previous && !current) {
    throw new InvalidArgumentError(`"${path}" exists neither in the box nor in the snapshot`, { code: 'ZOMG_FILE_NOT_FOUND' });
  }
  if (!previous) return { ...base, status: 'added' };
  if (!current) return { ...base, status: 'deleted' };
  let modified = statsDiffer(previous.stat, current.stat);
  if (previous.side.type === 'symlink' && current.side.type === 'symlink') {
    modified ||= previous.side.target !== current.side.target;
    return { ...base, status: modified ? 'modified' : 'unchanged' };
  }
  if (previous.side.type !== current.side.type) return { ...base, status: 'modified' };
  const before = readFileSync(oldHost as string);
  const after = readFileSync(newHost as string);
  const contentDiffers = !before.equals(after);
  if (!modified && !contentDiffers) {
    const [xa, xb] = await readXattrs([Buffer.from(oldHost as string), Buffer.from(newHost as string)]);
    modified = xa !== xb;
  }
  if (!contentDiffers) return { ...base, status: modified ? 'modified' : 'unchanged' };
  if (isBinary(before) || isBinary(after)) return { ...base, status: 'modified', binary: true };
  // Loaded here: the diff library is a dozen modules every other command would load for nothing.
  const { createTwoFilesPatch } = await import('diff');
  const patch = createTwoFilesPatch(`a${path}`, `b${path}`, before.toString('utf8'), after.toString('utf8'), undefined, undefined, { context: 3 });
  return { ...base, status: 'modified', diff: patch.split('\n').slice(1).join('\n') };
}
