/** Small filesystem helpers: errno checks and atomic writes. */
import { randomHex } from './builtins.js';
import { closeSync, fsyncSync, openSync, renameSync, writeSync } from 'node:fs';
import { lstat } from 'node:fs/promises';
import { dirname, join } from 'node:path';

export function isErrno(err: unknown, ...codes: string[]): err is NodeJS.ErrnoException {
  const code = (err as NodeJS.ErrnoException | null | undefined)?.code;
  return typeof code === 'string' && codes.includes(code);
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

/** True while a process with this pid exists (EPERM means it exists but is not ours). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return !isErrno(err, 'ESRCH');
  }
}

/** True when something (a symlink included, not followed) is at `path`. */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return false;
    throw err;
  }
}
