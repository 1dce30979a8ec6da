import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ZomgError } from '../../src/core/errors.js';
import type { BoxName, ProjectName } from '../../src/core/names.js';
import { MUTATIONS_LOCK, boxLockKey } from '../../src/engine/access.js';
import type { Engine } from '../../src/engine/engine.js';
import { type TestEngine, makeTestEngine } from '../helpers/engine.js';
import { busyboxRootfsTar } from '../helpers/fixtures.js';
import { isRoot } from '../helpers/pool.js';

const ref = (name: string) => ({ project: 'default' as ProjectName, name: name as BoxName });
const code = (c: string) => (err: unknown) => (err as ZomgError).code === c;

/** `diff -r` between two trees: empty when identical (content, and with --no-dereference, links). */
const treesEqual = (a: string, b: string): boolean => {
  try {
    execFileSync('diff', ['-r', '--no-dereference', a, b], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};

describe('engine: snapshots and restore on real btrfs', { skip: !isRoot() && 'needs root for btrfs' }, () => {
  let t: TestEngine;
  let root: string;
  let boxId: string;
  let failAt: string | undefined;

  before(async () => {
    t = await makeTestEngine({
      faultPoint: (step) => {
        if (step === failAt) throw new Error(`injected failure at ${step}`);
      },
    });
    await t.engine.importBase('bb', busyboxRootfsTar());
    const box = await t.engine.createBox(ref('box'), { base: 'bb' });
    boxId = box.id;
    root = join(t.pool.mnt, 'roots', box.id);
  });
  after(async () => t?.cleanup());

  it('names snapshots v0, v1, … and honours explicit names', async () => {
    writeFileSync(join(root, 'state'), 'zero');
    assert.equal((await t.engine.createSnapshot(ref('box'))).name, 'v0');
    writeFileSync(join(root, 'state'), 'one');
    assert.equal((await t.engine.createSnapshot(ref('box'), { description: 'first change' })).name, 'v1');
    writeFileSync(join(root, 'state'), 'named');
    const named = await t.engine.createSnapshot(ref('box'), { name: 'before-upgrade', description: 'named' });
    assert.equal(named.name, 'before-upgrade');
    await assert.rejects(t.engine.createSnapshot(ref('box'), { name: 'v1' }), code('ZOMG_SNAPSHOT_EXISTS'));
    for (const bad of ['', 'Bad', 'a--b', '-x', 'x-', 'a'.repeat(64), 'a_b']) {
      await assert.rejects(t.engine.createSnapshot(ref('box'), { name: bad }), code('ZOMG_INVALID_NAME'), bad);
    }
    await assert.rejects(t.engine.createSnapshot(ref('nobox')), code('ZOMG_BOX_NOT_FOUND'));
    const list = await t.engine.listSnapshots(ref('box'));
    assert.deepEqual(list.map((c) => [c.name, c.description]), [['v0', ''], ['v1', 'first change'], ['before-upgrade', 'named']]);
    assert.match(list[0]?.created_at ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    // Read-only.
    assert.throws(() => writeFileSync(join(t.pool.mnt, 'checkpoints', boxId, 'v0', 'x'), 'x'), /EROFS|read-only/i);
  });

  it('restores backward and forward; every snapshot survives', async () => {
    writeFileSync(join(root, 'state'), 'live');
    await t.engine.restoreSnapshot(ref('box'), 'v0');
    assert.equal(readFileSync(join(root, 'state'), 'utf8'), 'zero');
    assert.ok(treesEqual(root, join(t.pool.mnt, 'checkpoints', boxId, 'v0')));
    await t.engine.restoreSnapshot(ref('box'), 'before-upgrade');
    assert.equal(readFileSync(join(root, 'state'), 'utf8'), 'named');
    await t.engine.restoreSnapshot(ref('box'), 'v1');
    assert.equal(readFileSync(join(root, 'state'), 'utf8'), 'one');
    assert.equal((await t.engine.listSnapshots(ref('box'))).length, 3);
    // The restored root is writable, and no aside copy is left.
    writeFileSync(join(root, 'state'), 'after');
    assert.deepEqual(readdirSync(join(t.pool.mnt, 'roots')).filter((n) => n.startsWith(boxId)), [boxId]);
    await assert.rejects(t.engine.restoreSnapshot(ref('box'), 'nope'), code('ZOMG_SNAPSHOT_NOT_FOUND'));
  });

  it('a failure between any two steps of a restore leaves the root exactly as it was', async () => {
    writeFileSync(join(root, 'state'), 'precious');
    for (const step of ['restore:aside', 'restore:placed', 'restore:committed']) {
      failAt = step;
      await assert.rejects(t.engine.restoreSnapshot(ref('box'), 'v0'), /injected failure/);
      failAt = undefined;
      assert.equal(readFileSync(join(root, 'state'), 'utf8'), 'precious', step);
      assert.deepEqual(readdirSync(join(t.pool.mnt, 'roots')).filter((n) => n.startsWith(boxId)), [boxId], step);
    }
    // And with no failure it goes through.
    await t.engine.restoreSnapshot(ref('box'), 'v0');
    assert.equal(readFileSync(join(root, 'state'), 'utf8'), 'zero');
  });

  it('a failure while placing a snapshot leaves nothing behind', async () => {
    failAt = 'snapshot:placed';
    await assert.rejects(t.engine.createSnapshot(ref('box'), { name: 'half' }), /injected failure/);
    failAt = undefined;
    assert.ok(!existsSync(join(t.pool.mnt, 'checkpoints', boxId, 'half')));
    await assert.rejects(t.engine.getSnapshot(ref('box'), 'half'), code('ZOMG_SNAPSHOT_NOT_FOUND'));
  });

  it('finishes or undoes a restore cut short by a crash (reconciler)', async () => {
    // Simulate a crash after the old root was renamed aside, before the new root was placed.
    const aside = `${root}@restore-999999`;
    execFileSync('mv', [root, aside]);
    const e2 = await t.reopen();
    assert.ok(existsSync(root));
    assert.ok(!existsSync(aside));
    assert.equal(readFileSync(join(root, 'state'), 'utf8'), 'zero');
    await e2.close();
  });

  it('a reconciler running while another process restores leaves the box alone', async () => {
    // Mid-restore in "another process": the pool's mutations lock is held shared, the box
    // lock is held, and the root is renamed aside.
    const shared = await t.engine.ctx.locks.acquireShared(MUTATIONS_LOCK);
    const lock = await t.engine.ctx.locks.acquire(boxLockKey({ project: 'default', name: 'box' }));
    const aside = `${root}@restore-${process.pid}-test`;
    execFileSync('mv', [root, aside]);
    try {
      const e2 = await t.reopen();
      assert.equal((await e2.getBox(ref('box'))).id, boxId, 'the box row survives');
      assert.equal((await e2.listSnapshots(ref('box'))).length > 0, true, 'and its snapshots');
      await e2.close();
    } finally {
      execFileSync('mv', [aside, root]);
      lock.release();
      shared.release();
    }
    assert.equal(readFileSync(join(root, 'state'), 'utf8'), 'zero');
  });

  it('never produces the same name under concurrent creates (one process and two)', async () => {
    const other: Engine = await t.reopen();
    const results = await Promise.all([
      ...Array.from({ length: 6 }, () => t.engine.createSnapshot(ref('box'))),
      ...Array.from({ length: 6 }, () => other.createSnapshot(ref('box'))),
    ]);
    const names = results.map((c) => c.name);
    assert.equal(new Set(names).size, names.length);
    assert.deepEqual([...names].sort((a, b) => Number(a.slice(1)) - Number(b.slice(1))), Array.from({ length: 12 }, (_, i) => `v${i + 2}`));
  });

  it('serializes concurrent restores of one box: one applies after the other, never both half-way', async () => {
    const other: Engine = await t.reopen();
    const [a, b] = await Promise.all([t.engine.restoreSnapshot(ref('box'), 'v1'), other.restoreSnapshot(ref('box'), 'before-upgrade')]);
    assert.deepEqual([a.name, b.name], ['v1', 'before-upgrade']);
    const state = readFileSync(join(root, 'state'), 'utf8');
    assert.ok(state === 'one' || state === 'named', state);
    assert.ok(treesEqual(root, join(t.pool.mnt, 'checkpoints', boxId, state === 'one' ? 'v1' : 'before-upgrade')));
    assert.deepEqual(readdirSync(join(t.pool.mnt, 'roots')).filter((n) => n.startsWith(boxId)), [boxId]);
    await t.engine.restoreSnapshot(ref('box'), 'v0');
  });

  it('namespaces snapshots per box: no cross-box restore', async () => {
    await t.engine.createBox(ref('second'), { base: 'bb' });
    await assert.rejects(t.engine.restoreSnapshot(ref('second'), 'v0'), code('ZOMG_SNAPSHOT_NOT_FOUND'));
    await t.engine.createSnapshot(ref('second'));
    assert.equal((await t.engine.listSnapshots(ref('second'))).length, 1);
  });

  it('copes with nested subvolumes in the box root: snapshot, restore, delete', async () => {
    const nested = join(root, 'var', 'lib', 'inner');
    mkdirSync(join(root, 'var', 'lib'), { recursive: true });
    execFileSync('btrfs', ['subvolume', 'create', nested], { stdio: 'ignore' });
    writeFileSync(join(nested, 'data'), 'nested content');
    const cp = await t.engine.createSnapshot(ref('box'), { name: 'with-nested' });
    assert.equal(readFileSync(join(t.pool.mnt, 'checkpoints', boxId, cp.name, 'var', 'lib', 'inner', 'data'), 'utf8'), 'nested content');
    writeFileSync(join(nested, 'data'), 'changed');
    await t.engine.restoreSnapshot(ref('box'), 'with-nested');
    assert.equal(readFileSync(join(root, 'var', 'lib', 'inner', 'data'), 'utf8'), 'nested content');
    await t.engine.restoreSnapshot(ref('box'), 'v0');
    assert.ok(!existsSync(join(root, 'var', 'lib', 'inner')));
    await t.engine.restoreSnapshot(ref('box'), 'with-nested');
    await t.engine.deleteSnapshot(ref('box'), 'with-nested');
    await assert.rejects(t.engine.deleteSnapshot(ref('box'), 'with-nested'), code('ZOMG_SNAPSHOT_NOT_FOUND'));
  });

  it('deleting a box deletes its snapshots and leaves no subvolume', async () => {
    await t.engine.deleteBox(ref('box'));
    assert.ok(!existsSync(join(t.pool.mnt, 'checkpoints', boxId)));
    const listing = execFileSync('btrfs', ['subvolume', 'list', '-o', join(t.pool.mnt, 'roots')], { encoding: 'utf8' });
    assert.ok(!listing.includes(boxId), listing);
  });
});
