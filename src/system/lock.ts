/**
 * Named locks shared by every zomg process on the host (the CLI in local mode and the
 * server) through files in the state directory. A lock file holds its owner's pid; a lock
 * whose owner is dead is stale and is broken — under a second "breaker" lock that
 * re-checks the owner, so a fresh lock taken meanwhile is never removed by mistake.
 */
import { closeSync, mkdirSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConflictError } from '../core/errors.js';
import { isErrno, pidAlive } from './fs.js';

export interface LockOptions {
  /** How long to wait for a held lock before giving up with a busy error. */
  timeoutMs?: number;
  /** Shown in the busy error. */
  what?: string;
  signal?: AbortSignal;
}

export interface Lock {
  release(): void;
}

const FRESH_MS = 5000;

function tryCreate(path: string): boolean {
  try {
    const fd = openSync(path, 'wx', 0o600);
    try {
      writeSync(fd, String(process.pid));
    } finally {
      closeSync(fd);
    }
    return true;
  } catch (err) {
    if (isErrno(err, 'EEXIST')) return false;
    throw err;
  }
}

/** True when the lock at `path` is held by a live process (or is being written right now). */
function held(path: string): boolean {
  let text: string;
  let mtimeMs: number;
  try {
    text = readFileSync(path, 'utf8');
    mtimeMs = statSync(path).mtimeMs;
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return false;
    throw err;
  }
  const pid = Number.parseInt(text, 10);
  if (!Number.isInteger(pid) || pid <= 0) return Date.now() - mtimeMs < FRESH_MS;
  return pidAlive(pid);
}

function unlinkQuiet(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if (!isErrno(err, 'ENOENT')) throw err;
  }
}

function breakIfStale(path: string): void {
  const breaker = `${path}.break`;
  if (!tryCreate(breaker)) {
    if (!held(breaker)) unlinkQuiet(breaker);
    return;
  }
  try {
    if (!held(path)) unlinkQuiet(path);
  } finally {
    unlinkQuiet(breaker);
  }
}

export class LockManager {
  constructor(private readonly dir: string) {}

  private pathOf(key: string): string {
    return join(this.dir, `${key.replace(/[^a-zA-Z0-9._-]/g, '_')}.lock`);
  }

  /** Takes the lock named `key`, waiting up to `timeoutMs` (default 60 s). */
  async acquire(key: string, options: LockOptions = {}): Promise<Lock> {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const path = this.pathOf(key);
    const deadline = Date.now() + (options.timeoutMs ?? 60_000);
    let delay = 5;
    for (;;) {
      if (tryCreate(path)) {
        let released = false;
        return {
          release: () => {
            if (released) return;
            released = true;
            unlinkQuiet(path);
          },
        };
      }
      if (!held(path)) {
        breakIfStale(path);
        continue;
      }
      options.signal?.throwIfAborted();
      if (Date.now() >= deadline) {
        throw new ConflictError('ZOMG_BUSY', `${options.what ?? key} is busy: another operation on it is in progress`, {
          hint: 'wait for it to finish and try again',
        });
      }
      await sleep(delay);
      delay = Math.min(delay * 2, 50);
    }
  }

  /** Runs `fn` while holding the lock named `key`. */
  async with<T>(key: string, fn: () => Promise<T>, options: LockOptions = {}): Promise<T> {
    const lock = await this.acquire(key, options);
    try {
      return await fn();
    } finally {
      lock.release();
    }
  }
}
