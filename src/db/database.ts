/** Opening the metadata database: WAL, foreign keys, a busy timeout shared by CLI and server, migrations. */
import Database from 'better-sqlite3';
import { migrations } from './migrations.js';

export type Db = Database.Database;

export function openDatabase(path: string): Db {
  const db = new Database(path);
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
