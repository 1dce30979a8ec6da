/** Volumes on a pool that fills: clone, snapshot and backup restore succeed whole or fail as pool-full with nothing half-made. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ZomgError } from '../../src/core/errors.js';
import type { ProjectName, SafeName } from '../../src/core/names.js';
import { type TestEngine, makeTestEngine } from '../helpers/engine.js';
import { isRoot } from '../helpers/pool.js';

const vol = (name: string) => ({ project: 'default' as ProjectName, name: name as SafeName });

describe('volumes on a full pool', { skip: !isRoot() && 'needs root for btrfs' }, () => {
  let t: TestEngine;
  let source: TestEngine;
  let scratch: string;
  let url: string;

  const consistent = async () => {
    assert.deepEqual(readdirSync(join(t.pool.mnt, 'staging')), []);
    const ids = (await t.engine.listVolumes()).map((v) => v.id).sort();
    assert.deepEqual(readdirSync(join(t.pool.mnt, 'volumes')).filter((n) => !n.startsWith('_')).sort(), ids);
  };

  before(async () => {
    [t, source] = await Promise.all([makeTestEngine({}, 200), makeTestEngine({}, 512)]);
    scratch = mkdtempSync(join(tmpdir(), 'zomg-vfull-'));
    mkdirSync(join(scratch, 'target'));
    url = `file://${join(scratch, 'target')}`;
    const big = await source.engine.createVolume(vol('big'));
    execFileSync('dd', ['if=/dev/urandom', `of=${join(source.pool.mnt, 'volumes', big.id, 'blob')}`, 'bs=1M', 'count=80', 'status=none']);
    await source.engine.createBackup(vol('big'), { to: url });
  });
  after(async () => {
    await Promise.all([t?.cleanup(), source?.cleanup()]);
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  it('a backup restore that fills the pool fails as pool-full, leaves nothing, and the pool stays usable', async () => {
    const filler = await t.engine.createVolume(vol('filler'));
    try {
      execFileSync('dd', ['if=/dev/urandom', `of=${join(t.pool.mnt, 'volumes', filler.id, 'blob')}`, 'bs=1M', 'count=120', 'status=none']);
    } catch {
      /* ENOSPC is fine: the pool is nearly full either way */
    }
    execFileSync('sync');
    await assert.rejects(t.engine.restoreBackup({ from: url, source: vol('big'), to: vol('restored') }), (err: unknown) => {
      assert.equal((err as ZomgError).code, 'ZOMG_POOL_FULL', (err as Error).message);
      assert.equal((err as ZomgError).kind, 'pool_full');
      return true;
    });
    await assert.rejects(t.engine.getVolume(vol('restored')), (err: unknown) => (err as ZomgError).code === 'ZOMG_VOLUME_NOT_FOUND');
    await consistent();
    await t.engine.deleteVolume(vol('filler'));
    execFileSync('btrfs', ['subvolume', 'sync', t.pool.mnt]);
    const restored = await t.engine.restoreBackup({ from: url, source: vol('big'), to: vol('restored') });
    assert.equal(restored.name, 'restored');
    await consistent();
  });

  it('a clone or snapshot on a full pool either succeeds whole or fails as pool-full with nothing half-made', async () => {
    const restored = await t.engine.getVolume(vol('restored'));
    try {
      execFileSync('dd', ['if=/dev/urandom', `of=${join(t.pool.mnt, 'volumes', restored.id, 'more')}`, 'bs=1M', 'count=200', 'status=none']);
    } catch {
      /* ENOSPC: the pool is full now */
    }
    for (const attempt of [() => t.engine.createVolumeSnapshot(vol('restored'), { name: 'when-full' }), () => t.engine.createVolume(vol('clone'), { from: vol('restored') })]) {
      try {
        await attempt();
      } catch (err) {
        assert.equal((err as ZomgError).code, 'ZOMG_POOL_FULL', (err as Error).message);
      }
      await consistent();
    }
    const snaps = (await t.engine.listVolumeSnapshots(vol('restored'))).map((s) => s.name);
    const dir = join(t.pool.mnt, 'volume-checkpoints', restored.id);
    assert.deepEqual(existsSync(dir) ? readdirSync(dir).sort() : [], snaps.sort());
  });
});
