import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ConflictError } from '../../src/core/errors.js';
import { BasesRepo } from '../../src/db/bases-repo.js';
import { BoxesRepo, SnapshotsRepo } from '../../src/db/boxes-repo.js';
import { type Db, openDatabase } from '../../src/db/database.js';

/** Asserts `fn` throws a ConflictError with `code`, the SQLite error kept as its cause. */
function conflicts(fn: () => unknown, code: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ConflictError, String(err));
    assert.equal(err.code, code);
    assert.match(String((err.cause as { code?: unknown }).code), /^SQLITE_CONSTRAINT/);
    return true;
  });
}

describe('a SQLite uniqueness violation is a conflict, raised by the repository that hit it', () => {
  let dir: string;
  let db: Db;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'zomg-db-'));
    db = openDatabase(join(dir, 'zomg.db'));
  });
  after(() => {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('boxes, checkpoints and base versions', () => {
    const boxes = new BoxesRepo(db);
    const now = '2026-11-30T00:00:00Z';
    const row = { id: 'b1', project: 'p', name: 'web', base: 'bb', tags: {}, environment: {}, data_mounts: [], config: { privileged: false, cpus: null, memory_bytes: null, pids: null, publish: [] }, created_at: now, updated_at: now };
    boxes.insert(row);
    conflicts(() => boxes.insert({ ...row, id: 'b2' }), 'ZOMG_BOX_EXISTS');
    const cps = new SnapshotsRepo(db);
    cps.insert({ box_id: 'b1', name: 'v0', description: '', size_bytes: null, created_at: now });
    conflicts(() => cps.insert({ box_id: 'b1', name: 'v0', description: '', size_bytes: null, created_at: now }), 'ZOMG_SNAPSHOT_EXISTS');
    const bases = new BasesRepo(db);
    bases.insertVersion({ name: 'bb', alias: 'bb', kind: 'import', createdAt: now });
    conflicts(() => bases.insertVersion({ name: 'bb', alias: 'bb', kind: 'import', createdAt: now }), 'ZOMG_VERSION_EXISTS');
    // Anything else still surfaces as what it is.
    assert.throws(() => db.prepare('INSERT INTO nope VALUES (1)').run(), /no such table/);
  });
});
