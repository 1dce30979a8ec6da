/** A pool that fills up: no version recorded, staging cleaned, a clear 507-class error, the pool still usable. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ZomgError } from '../../src/core/errors.js';
import type { BoxName, ProjectName } from '../../src/core/names.js';
import { type TestEngine, makeTestEngine } from '../helpers/engine.js';
import { busyboxRootfsTar } from '../helpers/fixtures.js';
import { isRoot } from '../helpers/pool.js';

const ref = (name: string) => ({ project: 'default' as ProjectName, name: name as BoxName });
const code = (c: string) => (err: unknown) => (err as ZomgError).code === c;

describe('a full pool', { skip: !isRoot() && 'needs root for btrfs' }, () => {
  let t: TestEngine;
  let scratch: string;
  let bigTar: string;

  before(async () => {
    t = await makeTestEngine({}, 200);
    scratch = mkdtempSync(join(tmpdir(), 'zomg-full-'));
    const tree = join(scratch, 'tree');
    mkdirSync(join(tree, 'data'), { recursive: true });
    execFileSync('dd', ['if=/dev/urandom', `of=${join(tree, 'data', 'blob')}`, 'bs=1M', 'count=260', 'status=none']);
    bigTar = join(scratch, 'big.tar');
    execFileSync('tar', ['-C', tree, '-cf', bigTar, '.']);
    rmSync(tree, { recursive: true, force: true });
    await t.engine.importBase('bb', busyboxRootfsTar());
  });
  after(async () => {
    await t?.cleanup();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  it('an import that fills the pool fails cleanly and leaves the pool usable', async () => {
    await assert.rejects(t.engine.importBase('huge', bigTar), (err: unknown) => code('ZOMG_POOL_FULL')(err) && (err as ZomgError).kind === 'pool_full');
    assert.equal((await t.engine.listBases()).some((b) => b.name === 'huge'), false);
    await assert.rejects(t.engine.inspectBase('huge'), code('ZOMG_BASE_NOT_FOUND'));
    assert.deepEqual(readdirSync(join(t.pool.mnt, 'staging')), []);
    // Space comes back once the staging subvolume is cleaned; the pool works again.
    execFileSync('sync');
    const box = await t.engine.createBox(ref('after'), { base: 'bb' });
    writeFileSync(join(t.pool.mnt, 'roots', box.id, 'ok'), 'still usable');
    assert.equal((await t.engine.createSnapshot(ref('after'))).name, 'v0');
  });

  it('a snapshot on a full pool either succeeds whole or fails as pool-full with nothing half-made', async () => {
    const box = await t.engine.getBox(ref('after'));
    const filler = join(t.pool.mnt, 'roots', box.id, 'filler');
    try {
      execFileSync('dd', ['if=/dev/urandom', `of=${filler}`, 'bs=1M', 'count=400', 'status=none']);
    } catch {
      /* ENOSPC: the pool is full now */
    }
    let outcome: string;
    try {
      outcome = (await t.engine.createSnapshot(ref('after'), { name: 'when-full' })).name;
    } catch (err) {
      assert.equal((err as ZomgError).code, 'ZOMG_POOL_FULL');
      outcome = 'refused';
    }
    const names = (await t.engine.listSnapshots(ref('after'))).map((c) => c.name);
    if (outcome === 'refused') {
      assert.deepEqual(names, ['v0']);
      assert.ok(!existsSync(join(t.pool.mnt, 'checkpoints', box.id, 'when-full')));
    } else {
      assert.deepEqual(names, ['v0', 'when-full']);
      assert.ok(existsSync(join(t.pool.mnt, 'checkpoints', box.id, 'when-full', 'filler')));
    }
    rmSync(filler, { force: true });
  });
});
