/** Opening the metadata database: WAL, foreign keys, a busy timeout shared by CLI and server, migrations. */
import { chmodSync, closeSync, existsSync, openSync } from 'node:fs';
import { isErrno } from '../system/fs.js';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { migrations } from './migrations.js';

const ADDON = join('node_modules', 'better-sqlite3', 'build', 'Release', 'better_sqlite3.node');

/**
 * The addon's path, handed to better-sqlite3 directly: its default lookup (the `bindings`
 * package) probes a dozen paths on every process start, a measurable part of CLI latency.
 * The node_modules above this file come first, as Node's resolution would find them
 * (`require.resolve` reads package.json files on the way: ~1 ms of a start), then that.
 */
function nativeBinding(): string | undefined {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    const path = join(dir, ADDON);
    if (existsSync(path)) return path;
    if (existsSync(join(dir, 'node_modules', 'better-sqlite3'))) break; // the package, without a built addon here
    if (dirname(dir) === dir) break;
  }
  try {
    const path = join(dirname(createRequire(import.meta.url).resolve('better-sqlite3/package.json')), 'build', 'Release', 'better_sqlite3.node');
    return existsSync(path) ? path : undefined;
  } catch {
    return undefined;
  }
}

export type Db = Database.Database;

/**
 * Makes the database file 0600 before SQLite opens it (creating it empty when missing):
 * SQLite gives the -wal and -shm files the database file's mode, so they follow. Files
 * left wider by an older zomg are tightened too.
 */
function ownerOnly(path: string): void {
  closeSync(openSync(path, 'a', 0o600));
  for (const file of [path, `${path}-wal`, `${path}-shm`]) {
    try {
      chmodSync(file, 0o600);
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err;
    }
  }
}

export function openDatabase(path: string): Db {
  if (path !== ':memory:') ownerOnly(path);
  const binding = nativeBinding();
  const db = new Database(path, binding ? { nativeBinding: binding } : {});
  db.pragma('journal_mode = WAL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 10000');
  db.pragma('synchronous = NORMAL');
  migrate(db);
  return db;
}

function migrate(db: Db): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current >= migrations.length) return;
  db.transaction(() => {
    // Re-read inside the write transaction: another process may have migrated meanwhile.
    const from = db.pragma('user_version', { simple: true }) as number;
    for (let i = from; i < migrations.length; i++) db.exec(migrations[i] as string);
    db.pragma(`user_version = ${migrations.length}`);
  }).immediate();
}

/** Runs `fn` in an IMMEDIATE transaction (takes the write lock at once, so read-then-write is safe across processes). */
export function transaction<T>(db: Db, fn: () => T): T {
  return db.transaction(fn).immediate();
}
