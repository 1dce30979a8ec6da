/** Data-volume names, mount specs and the stored data_mounts shape (old rows stay readable). */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { ZomgError } from '../../src/core/errors.js';
import type { ProjectName } from '../../src/core/names.js';
import { boxOwnedVolumeName, checkMountSet, mountHolding, parseDataMountSpec, parseVolumeRef } from '../../src/core/volumes.js';
import { BoxesRepo } from '../../src/db/boxes-repo.js';
import { openDatabase } from '../../src/db/database.js';

const code = (c: string) => (err: unknown) => (err as ZomgError).code === c;

describe('data volume parsing', () => {
  it('parses NAME=/path[:ro|:rw] and refuses every malformed spec', () => {
    assert.deepEqual(parseDataMountSpec('cache=/var/cache'), { volume: 'cache', path: '/var/cache', read_only: false });
    assert.deepEqual(parseDataMountSpec('p:cache=/srv:ro'), { volume: 'p:cache', path: '/srv', read_only: true });
    assert.deepEqual(parseDataMountSpec('cache=/srv:rw'), { volume: 'cache', path: '/srv', read_only: false });
    for (const bad of ['cache', '=/srv', 'cache=srv', 'cache=/', 'cache=/proc', 'cache=/sys/fs', 'cache=/dev/x', 'cache=/box/all', 'cache=/home/u', 'cache=/a//b', 'cache=/a/./b', 'cache=/a/', 'cache=/x:rx', 'cache=/x\u0001']) {
      assert.throws(() => parseDataMountSpec(bad), code('ZOMG_INVALID_DATA_MOUNT'), bad);
    }
  });

  it('refuses shared, nested and repeated mounts', () => {
    checkMountSet([{ name: 'a', path: '/a' }, { name: 'b', path: '/ab' }]);
    assert.throws(() => checkMountSet([{ name: 'a', path: '/a' }, { name: 'b', path: '/a' }]), code('ZOMG_INVALID_DATA_MOUNT'));
    assert.throws(() => checkMountSet([{ name: 'a', path: '/a/b' }, { name: 'b', path: '/a' }]), code('ZOMG_INVALID_DATA_MOUNT'));
    assert.throws(() => checkMountSet([{ name: 'a', path: '/a' }, { name: 'a', path: '/b' }]), code('ZOMG_INVALID_DATA_MOUNT'));
  });

  it('names refs, box-owned volumes and the mount holding a path', () => {
    assert.deepEqual(parseVolumeRef('x', 'p' as ProjectName), { project: 'p', name: 'x' });
    assert.deepEqual(parseVolumeRef('q:x', 'p' as ProjectName), { project: 'q', name: 'x' });
    assert.throws(() => parseVolumeRef('Q:x', 'p' as ProjectName), code('ZOMG_INVALID_NAME'));
    const long = boxOwnedVolumeName(`${'a'.repeat(45)}-bcdef`, '0123456789ab');
    assert.ok(long.length <= 63 && !long.includes('--'), long);
    assert.equal(boxOwnedVolumeName('web', '0123456789ab'), 'box-web-0123456789ab');
    const mounts = [{ name: 'data', path: '/srv/data', read_only: false }];
    assert.equal(mountHolding(mounts, '/srv/data/x')?.name, 'data');
    assert.equal(mountHolding(mounts, '/etc/../srv/data/x')?.name, 'data');
    assert.equal(mountHolding(mounts, '/srv/data/../x'), undefined);
    assert.equal(mountHolding(mounts, '/srv/database'), undefined);
  });

  it('reads rows written with the old data_mounts shape', () => {
    const dir = mkdtempSync(join(tmpdir(), 'zomg-db-'));
    try {
      const db = openDatabase(join(dir, 'zomg.db'));
      db.prepare("INSERT INTO boxes (id, project, name, base, data_mounts, created_at, updated_at) VALUES ('i', 'p', 'b', 'bb', ?, 't', 't')").run(
        JSON.stringify([{ volume: 'cache', path: '/c', mode: 'ro' }, { volume: 'w', path: '/w', mode: 'rw' }]),
      );
      assert.deepEqual(new BoxesRepo(db).byId('i')?.data_mounts, [{ name: 'cache', path: '/c', read_only: true }, { name: 'w', path: '/w', read_only: false }]);
      db.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
