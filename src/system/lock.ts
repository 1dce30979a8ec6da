/**
 * Named locks shared by every zomg process on the host (the CLI in local mode and the
 * server) through files in the state directory. A lock file holds its owner's pid and
 * start time; a lock whose owner is dead (a reused pid does not count as alive) is stale
 * and is broken — under a second "breaker" lock that re-checks the owner, so a fresh lock
 * taken meanwhile is never removed by mistake.
 */
import { randomHex } from './builtins.js';
import { closeSync, mkdirSync, openSync, readFileSync, readdirSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConflictError } from '../core/errors.js';
import { isErrno } from './fs.js';
import { isAlive, selfIdentity } from './procfs.js';

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

let selfTag: string | undefined;
/** `<pid> <start time>`: what a lock file says about its owner. */
const ownerTag = (): string => {
  if (selfTag === undefined) {
    const me = selfIdentity();
    selfTag = `${me.pid} ${me.startTime}`;
  }
  return selfTag;
};

function tryCreate(path: string): boolean {
  try {
    const fd = openSync(path, 'wx', 0o600);
    try {
      writeSync(fd, ownerTag());
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
  const [pidText, startText] = text.trim().split(' ');
  const pid = Number.parseInt(pidText ?? '', 10);
  if (!Number.isInteger(pid) || pid <= 0) return Date.now() - mtimeMs < FRESH_MS;
  const startTime = startText === undefined ? undefined : Number.parseInt(startText, 10);
  return isAlive({ pid, startTime: Number.isInteger(startTime) ? startTime : undefined });
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

  /**
   * Takes the lock named `key` SHARED: any number of holders at once, none while an
   * exclusive holder has it (a waiting exclusive never starves holders: it only tries).
   * Each holder is a file `<key>.shared.<pid>-<hex>`; one left by a dead process is the
   * evidence of a crash mid-mutation (`staleShared`).
   */
  async acquireShared(key: string, options: LockOptions = {}): Promise<Lock> {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const excl = this.pathOf(key);
    const mine = join(this.dir, `${this.sharedPrefix(key)}${ownerTag().replace(' ', '.')}.${randomHex(4)}`);
    const deadline = Date.now() + (options.timeoutMs ?? 60_000);
    let delay = 5;
    for (;;) {
      if (!tryCreate(mine)) throw new Error(`shared lock file ${mine} exists`);
      // Written first, checked second (the exclusive side does the same in the other
      // order), so one of two racing processes always sees the other.
      if (!held(excl)) {
        let released = false;
        return {
          release: () => {
            if (released) return;
            released = true;
            unlinkQuiet(mine);
          },
        };
      }
      unlinkQuiet(mine);
      options.signal?.throwIfAborted();
      if (Date.now() >= deadline) {
        throw new ConflictError('ZOMG_BUSY', `${options.what ?? key} is busy: it is being repaired after a crash`, { hint: 'wait a moment and try again' });
      }
      await sleep(delay);
      delay = Math.min(delay * 2, 50);
    }
  }

  /**
   * Takes the lock named `key` EXCLUSIVELY if no live process holds it shared or
   * exclusively right now; never waits. Returns undefined when it is busy.
   */
  tryExclusive(key: string): Lock | undefined {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const excl = this.pathOf(key);
    if (!tryCreate(excl)) {
      if (held(excl)) return undefined;
      breakIfStale(excl);
      if (!tryCreate(excl)) return undefined;
    }
    const release = (): void => unlinkQuiet(excl);
    if (this.sharedHolders(key).some((h) => h.alive)) {
      release();
      return undefined;
    }
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        release();
      },
    };
  }

  /** Shared-holder files of `key` whose process is dead: crash evidence. */
  staleShared(key: string): string[] {
    return this.sharedHolders(key)
      .filter((h) => !h.alive)
      .map((h) => h.path);
  }

  /** Removes shared-holder files of dead processes (after the crash they witness has been repaired). */
  clearStaleShared(key: string): void {
    for (const path of this.staleShared(key)) unlinkQuiet(path);
  }

  private sharedPrefix(key: string): string {
    return `${key.replace(/[^a-zA-Z0-9._-]/g, '_')}.shared.`;
  }

  private sharedHolders(key: string): Array<{ path: string; alive: boolean }> {
    const prefix = this.sharedPrefix(key);
    let entries: string[];
    try {
      entries = readdirSync(this.dir);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return [];
      throw err;
    }
    return entries
      .filter((n) => n.startsWith(prefix))
      .map((n) => {
        const [pid, startTime] = n.slice(prefix.length).split('.').map((x) => Number.parseInt(x, 10));
        const alive = pid !== undefined && Number.isInteger(pid) && pid > 0 && isAlive({ pid, startTime: Number.isInteger(startTime) ? startTime : undefined });
        return { path: join(this.dir, n), alive };
      });
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
