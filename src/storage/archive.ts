/**
 * Copying files in and out of a box as tar streams (`zomg cp`, `GET|PUT …/files`), with GNU
 * tar through system/run (numeric owners, modes, setuid bits, symlinks, hardlinks,
 * timestamps, xattrs and ACLs kept; research/machine.md §7).
 *
 * Every path is resolved inside the root first (system/rootpath.ts `resolveInRoot`), so tar
 * only ever gets symlink-free host paths, and an archive coming in passes the same TarGate
 * as a rootfs import (storage/tar.ts): no absolute name, no `..`, nothing through a symlink
 * the archive made, nor through one already there unless it is relative and stays inside
 * the target directory.
 *
 * The archive's shape is docker's: `pack` yields one top-level entry named after the source
 * (`etc/`, `etc/passwd`, …); `unpack` puts it into a directory, or under a new name.
 */
import { posix } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { InvalidArgumentError, PoolFullError, fileNotFound, ToolError, UnprocessableError, ZomgError } from '../core/errors.js';
import { type ResolvedPath, resolveInRoot } from '../system/rootpath.js';
import { statSync } from 'node:fs';
import { CommandError, isNoSpace, run } from '../system/run.js';
import { CP_TAR_KEEP, peekFirstType, sedReplacement } from '../system/tarstream.js';
import { TarGate } from './tar.js';

function escapeError(path: string): InvalidArgumentError {
  return new InvalidArgumentError(`the path "${path}" leaves the box's root`, { code: 'ZOMG_PATH_ESCAPES', hint: 'use a path inside the box' });
}

function checkPath(path: string): void {
  // eslint-disable-next-line no-control-regex -- control bytes are exactly what is refused
  if (path === '' || /[\0-\x1f\x7f]/.test(path)) {
    throw new InvalidArgumentError('the path in the box is empty or holds control characters', { code: 'ZOMG_INVALID_PATH' });
  }
}

/** Whether a resolved path is a directory (the root itself: stat, since it may be `/proc/<pid>/root`, a link). */
function isDirectory(resolved: ResolvedPath): boolean {
  if (resolved.boxPath === '/') return statSync(resolved.hostPath).isDirectory();
  return resolved.stat?.isDirectory() === true;
}

const notFound = (path: string): ZomgError => fileNotFound(path, { where: 'box' });

function lastLine(text: string): string {
  const lines = text.trim().split('\n').filter((l) => !/^tar: Exiting with failure|^tar: Child returned status/.test(l));
  return lines[lines.length - 1] ?? '';
}

function tarFailure(err: unknown, what: string): Error {
  if (err instanceof ZomgError) return err;
  if (isNoSpace(err)) return new PoolFullError('the storage pool filled up while copying', { cause: err });
  if (err instanceof CommandError) {
    if (/Read-only file system/.test(err.stderr)) {
      return new UnprocessableError('ZOMG_READ_ONLY_PATH', 'the target in the box is on a read-only mount', { cause: err, hint: '/box/bin and read-only data volumes cannot be written' });
    }
    if (/does not look like a tar archive|Unexpected EOF|Skipping to next header|Damaged tar archive/i.test(err.stderr)) {
      return new UnprocessableError('ZOMG_INVALID_ARCHIVE', `the archive is not a valid tar stream: ${lastLine(err.stderr)}`, { cause: err });
    }
    return new ToolError('ZOMG_TAR_FAILED', `tar failed to ${what}: ${lastLine(err.stderr)}`, { cause: err });
  }
  return err instanceof Error ? err : new Error(String(err));
}

/**
 * Writes a tar stream of `boxPath` (a file, a directory with everything under it, or a
 * symlink itself — a final symlink is not followed, as `docker cp`) inside `root` to `out`.
 * The archive holds one top-level entry, the source's name; `/` is archived as `.`. Mounts
 * below the source are not entered (a running box's /proc, /dev, volumes). Does not end `out`.
 *
 * Throws `ZOMG_INVALID_PATH`, `ZOMG_PATH_ESCAPES`, NotFoundError `ZOMG_PATH_NOT_FOUND`.
 */
export async function packFromRoot(root: string, boxPath: string, out: Writable, opts: { signal?: AbortSignal } = {}): Promise<void> {
  checkPath(boxPath);
  // Not normalized first: a `..` above the root must be refused, not clamped.
  const abs = boxPath.startsWith('/') ? boxPath : `/${boxPath}`;
  const src = resolveInRoot(root, abs, { followFinal: false, onEscape: () => escapeError(boxPath) });
  if (src.stat === undefined) throw notFound(boxPath);
  let args: string[];
  if (src.boxPath === '/') {
    args = ['-c', '-f', '-', ...CP_TAR_KEEP, '--one-file-system', '-C', src.hostPath, '.'];
  } else {
    const parent = src.hostPath.slice(0, src.hostPath.lastIndexOf('/')) || '/';
    // `--` so that a name starting with `-` is a name.
    args = ['-c', '-f', '-', ...CP_TAR_KEEP, '--one-file-system', '-C', parent, '--', posix.basename(src.boxPath)];
  }
  // Exit 1 is "a file changed while it was read": the copy is still a copy of a live tree.
  await run('tar', args, { stdout: out, okCodes: [0, 1], ...(opts.signal ? { signal: opts.signal } : {}) }).catch((err: unknown) => {
    throw tarFailure(err, 'read the files');
  });
}

export interface UnpackOptions {
  /** `boxPath` must be an existing directory; the archive goes in as it is (a user's `-` stream). */
  into?: boolean;
  signal?: AbortSignal;
}

/**
 * Extracts the tar stream `input` at `boxPath` inside `root`, as root, keeping numeric
 * owners, modes, timestamps, symlinks, xattrs and ACLs:
 * - `boxPath` an existing directory: the archive goes into it (`cp x box:/dir` → `/dir/x`);
 * - otherwise (and not `into`): its parent must be a directory, and the archive's top-level
 *   entry is extracted under the name `basename(boxPath)` (`cp x box:/dir/y` → `/dir/y`),
 *   replacing a file there; a directory does not replace a file.
 *
 * Throws `ZOMG_INVALID_PATH`, `ZOMG_PATH_ESCAPES`, NotFoundError `ZOMG_PATH_NOT_FOUND` (no
 * such directory), InvalidArgumentError `ZOMG_NOT_A_DIRECTORY`, UnprocessableError
 * `ZOMG_UNSAFE_ARCHIVE` / `ZOMG_INVALID_ARCHIVE` / `ZOMG_READ_ONLY_PATH`, PoolFullError.
 * A failure may leave what was extracted before it (as `tar -x` and `docker cp` do).
 */
export async function unpackIntoRoot(root: string, boxPath: string, input: Readable, opts: UnpackOptions = {}): Promise<void> {
  try {
    checkPath(boxPath);
    const abs = boxPath.startsWith('/') ? boxPath : `/${boxPath}`;
    const dest = resolveInRoot(root, abs, { onEscape: () => escapeError(boxPath) });
    let dir: string;
    const transform: string[] = [];
    let stream = input;
    if (isDirectory(dest)) {
      dir = dest.hostPath;
    } else {
      if (opts.into) {
        if (dest.stat === undefined) throw notFound(boxPath);
        throw new InvalidArgumentError(`"${boxPath}" in the box is not a directory`, { code: 'ZOMG_NOT_A_DIRECTORY', hint: 'a tar stream is extracted into a directory' });
      }
      const parentPath = posix.dirname(dest.boxPath);
      const parent = resolveInRoot(root, parentPath);
      if (!isDirectory(parent)) {
        throw fileNotFound(parentPath, { where: 'box', what: 'directory' });
      }
      if (dest.stat !== undefined) {
        const peeked = await peekFirstType(input);
        stream = peeked.stream;
        if (peeked.type === '5') {
          throw new InvalidArgumentError(`cannot copy a directory over the file "${boxPath}" in the box`, { code: 'ZOMG_NOT_A_DIRECTORY', hint: 'copy into a directory instead' });
        }
      }
      dir = parent.hostPath;
      // The archive's top-level name becomes the target's; symlink targets keep theirs (S).
      transform.push(`--transform=s|^[^/]*|${sedReplacement(posix.basename(dest.boxPath))}|S`);
    }
    const gate = new TarGate(dir, true);
    const ac = new AbortController();
    const failures: unknown[] = [];
    const fail = (err: unknown): void => {
      if (ac.signal.aborted) return;
      failures.push(err);
      ac.abort();
    };
    const onUserAbort = (): void => ac.abort();
    opts.signal?.addEventListener('abort', onUserAbort, { once: true });
    stream.on('error', fail);
    gate.on('error', fail);
    stream.pipe(gate);
    const args = ['-x', '-f', '-', '-C', dir, ...CP_TAR_KEEP, '--same-owner', '--keep-directory-symlink', ...transform];
    try {
      await run('tar', args, { input: gate, signal: ac.signal }).catch((err: unknown) => fail(err));
    } finally {
      opts.signal?.removeEventListener('abort', onUserAbort);
    }
    if (opts.signal?.aborted) throw opts.signal.reason;
    if (failures.length > 0) throw tarFailure(failures[0], 'extract the archive');
    if (gate.truncated) throw new UnprocessableError('ZOMG_INVALID_ARCHIVE', 'the archive is truncated (it ends in the middle of a member)');
  } finally {
    // Whatever was not read (after a refusal) is drained, so an HTTP client still gets its answer.
    if (!input.readableEnded) input.resume();
  }
}
