/** Opening the metadata database: WAL, foreign keys, a busy timeout shared by CLI and server, migrations. */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { migrations } from './migrations.js';

/**
 * The addon's path, handed to better-sqlite3 directly: its default lookup (the `bindings`
 * package) probes a dozen paths on every process start, a measurable part of CLI latency.
 */
function nativeBinding(): string | undefined {
  try {
    const path = join(dirname(createRequire(import.meta.url).resolve('better-sqlite3/package.json')), 'build', 'Release', 'better_sqlite3.node');
    return existsSync(path) ? path : undefined;
  } catch {
    return undefined;
  }
}

export type Db = Database.Database;

export function openDatabase(path: string): Db {
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
