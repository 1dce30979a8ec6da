/** Small filesystem helpers: errno checks, atomic writes, the size of a file a user named. */
import { randomHex } from './builtins.js';
import { closeSync, fsyncSync, lstatSync, openSync, renameSync, statSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { InvalidArgumentError, fileNotFound } from '../core/errors.js';
import { quote } from '../core/quote.js';

export function isErrno(err: unknown, ...codes: string[]): err is NodeJS.ErrnoException {
  const code = (err as NodeJS.ErrnoException | null | undefined)?.code;
  return typeof code === 'string' && codes.includes(code);
}

/**
 * The size of the regular file a user named on this machine (a tarball to import), or the
 * error to show them: `ZOMG_FILE_NOT_FOUND`, or `ZOMG_NOT_A_FILE` for a directory or a device.
 */
export function regularFileSize(path: string): number {
  let st;
  try {
    st = statSync(path);
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) throw fileNotFound(path, { cause: err });
    throw err;
  }
  if (!st.isFile()) throw new InvalidArgumentError(`${quote(path)} is not a regular file`, { code: 'ZOMG_NOT_A_FILE', hint: 'pass the path of a file' });
  return st.size;
}

/** Writes `data` to `path` through a temporary file and a rename, fsynced, with `mode`. */
export function atomicWriteFile(path: string, data: string | Buffer, mode = 0o644): void {
  const tmp = join(dirname(path), `.${randomHex(6)}.tmp`);
  const fd = openSync(tmp, 'wx', mode);
  try {
    writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

/**
 * True when something (a symlink included, not followed) is at `path`. One lstat, made
 * synchronously: a call through Node's thread pool costs more than the system call.
 */
export function pathExists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return false;
    throw err;
  }
}
