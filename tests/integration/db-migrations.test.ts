/**
 * A database written by an older zomg opens with today's code: the later migrations run
 * once, in order, and keep every row.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { BoxesRepo } from '../../src/db/boxes-repo.js';
import { openDatabase } from '../../src/db/database.js';
import { migrations } from '../../src/db/migrations.js';

const tables = (db: Database.Database): string[] =>
  (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as Array<{ name: string }>).map((r) => r.name);

describe('database migrations', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'zomg-db-migrate-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('migrates a database of the first three migrations, dropping pending_paths and keeping the rows', () => {
    const path = join(dir, 'old.db');
    const old = new Database(path);
    for (const sql of migrations.slice(0, 3)) old.exec(sql);
    old.pragma('user_version = 3');
    old.prepare("INSERT INTO boxes (id, project, name, base, created_at, updated_at) VALUES ('b1', 'p', 'web', 'box-base@v1', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')").run();
    old.prepare("INSERT INTO pending_paths (path, pid, started_at) VALUES ('staging/1-x', 1, '2026-01-01T00:00:00Z')").run();
    assert.ok(tables(old).includes('pending_paths'));
    old.close();

    const db = openDatabase(path);
    try {
      assert.equal(db.pragma('user_version', { simple: true }), migrations.length);
      assert.ok(!tables(db).includes('pending_paths'), 'pending_paths is gone');
      assert.deepEqual(tables(db), ['base_aliases', 'base_versions', 'boxes', 'checkpoints', 'volume_backup_parents', 'volume_snapshots', 'volumes']);
      const box = new BoxesRepo(db).get('p', 'web');
      assert.equal(box?.id, 'b1');
      assert.equal(box?.base, 'box-base@v1');
    } finally {
      db.close();
    }
  });

  it('creates a new database without pending_paths, and opening it again changes nothing', () => {
    const path = join(dir, 'new.db');
    openDatabase(path).close();
    const db = openDatabase(path);
    try {
      assert.equal(db.pragma('user_version', { simple: true }), migrations.length);
      assert.ok(!tables(db).includes('pending_paths'));
    } finally {
      db.close();
    }
  });
});
