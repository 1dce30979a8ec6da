/**
 * Data volumes on real btrfs with real bwrap boxes: create/clone/delete, mounts (read-only
 * enforced by the kernel), forks into box-owned volumes, snapshots with atomic restore,
 * diffs, root-only snapshots/saves/diffs, every bad input, and crashes (kill -9) at each step.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Readable, Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import type { ZomgError } from '../../src/core/errors.js';
import type { BoxName, ProjectName, SafeName } from '../../src/core/names.js';
import type { ExecRequest } from '../../src/core/service.js';
import { type TestEngine, makeTestEngine } from '../helpers/engine.js';
import { busyboxRootfsTar } from '../helpers/fixtures.js';
import { isRoot } from '../helpers/pool.js';

const ref = (name: string, project = 'default') => ({ project: project as ProjectName, name: name as BoxName });
const vol = (name: string, project = 'default') => ({ project: project as ProjectName, name: name as SafeName });
const code = (c: string) => (err: unknown) => {
  assert.equal((err as ZomgError).code, c, (err as Error).message);
  assert.ok((err as Error).message.length > 10);
  return true;
};
const CRASH_CHILD = fileURLToPath(new URL('../helpers/crash-child.js', import.meta.url));

describe('engine: data volumes on real btrfs', { skip: !isRoot() && 'needs root for btrfs' }, () => {
  let t: TestEngine;
  const vpath = (id: string) => join(t.pool.mnt, 'volumes', id);

  const run = async (box: string, command: string[], opts: Partial<ExecRequest> & { input?: string } = {}) => {
    let stdout = '';
    let stderr = '';
    const sink = (fn: (s: string) => void) => new Writable({ write: (c: Buffer, _e, cb) => (fn(c.toString()), cb()) });
    const { exit_code } = await t.engine.exec(ref(box), { command, ...opts }, {
      ...(opts.input !== undefined ? { stdin: Readable.from([Buffer.from(opts.input)]) } : {}),
      stdout: sink((s) => (stdout += s)),
      stderr: sink((s) => (stderr += s)),
    });
    return { exit_code, stdout, stderr };
  };

  /** No subvolume without a row, no row without a subvolume, nothing left in staging. */
  const assertConsistent = async () => {
    const ids = (await t.engine.listVolumes()).map((v) => v.id).sort();
    assert.deepEqual(readdirSync(join(t.pool.mnt, 'volumes')).filter((n) => !n.startsWith('_')).sort(), ids);
    assert.deepEqual(readdirSync(join(t.pool.mnt, 'staging')).filter((n) => n !== 'podman'), []);
    for (const v of await t.engine.listVolumes()) {
      const snaps = (await t.engine.listVolumeSnapshots(vol(v.name, v.project))).map((s) => s.name).sort();
      const dir = join(t.pool.mnt, 'volume-checkpoints', v.id);
      assert.deepEqual(existsSync(dir) ? readdirSync(dir).sort() : [], snaps);
    }
  };

  before(async () => {
    t = await makeTestEngine();
    await t.engine.importBase('bb', busyboxRootfsTar());
  });
  after(async () => t?.cleanup());

  it('creates, lists, clones (O(1), from a volume or one of its snapshots) and deletes volumes', async () => {
    const v = await t.engine.createVolume(vol('data'));
    assert.equal(v.ownership, 'persistent');
    assert.equal(v.size_bytes, null);
    assert.deepEqual(v.attached, []);
    writeFileSync(join(vpath(v.id), 'hello'), 'v1');
    const snap = await t.engine.createVolumeSnapshot(vol('data'));
    assert.equal(snap.name, 'v0');
    writeFileSync(join(vpath(v.id), 'hello'), 'v2');
    const clone = await t.engine.createVolume(vol('clone'), { from: vol('data') });
    assert.equal(readFileSync(join(vpath(clone.id), 'hello'), 'utf8'), 'v2');
    assert.equal(clone.source, 'data');
    const old = await t.engine.createVolume(vol('old'), { from: vol('data'), fromSnapshot: 'v0' });
    assert.equal(readFileSync(join(vpath(old.id), 'hello'), 'utf8'), 'v1');
    assert.equal(old.source, 'data@v0');
    // another project, reached as project:name
    const other = await t.engine.createVolume(vol('shared', 'other'), { from: vol('data') });
    assert.equal(other.project, 'other');
    assert.equal(other.source, 'default:data');
    assert.deepEqual((await t.engine.listVolumes({ project: 'default' })).map((x) => x.name), ['clone', 'data', 'old']);
    assert.deepEqual((await t.engine.listVolumes()).map((x) => `${x.project}:${x.name}`), ['default:clone', 'default:data', 'default:old', 'other:shared']);
    // sizes: measured off the hot path
    assert.equal(await t.engine.computeSizes(), true);
    assert.equal((await t.engine.getVolume(vol('data'))).size_bytes, 2);
    assert.equal((await t.engine.listVolumeSnapshots(vol('data')))[0]?.size_bytes, 2);
    await t.engine.deleteVolume(vol('old'));
    assert.ok(!existsSync(vpath(old.id)));
    await assert.rejects(t.engine.getVolume(vol('old')), code('ZOMG_VOLUME_NOT_FOUND'));
    await assertConsistent();
  });

  it('refuses bad volume input with stable codes and leaves nothing half-made', async () => {
    for (const bad of ['', 'Bad', 'a--b', '-x', 'x-', 'a'.repeat(64), 'a_b', 'a.b']) {
      await assert.rejects(t.engine.createVolume(vol(bad)), code('ZOMG_INVALID_NAME'), bad);
      await assert.rejects(t.engine.createVolumeSnapshot(vol('data'), { name: bad }), code('ZOMG_INVALID_NAME'), bad);
      if (bad !== '') await assert.rejects(t.engine.createBackup(vol('data'), { to: 'file:///tmp', name: bad }), code('ZOMG_INVALID_NAME'), bad);
    }
    await assert.rejects(t.engine.createVolume(vol('data')), code('ZOMG_VOLUME_EXISTS'));
    await assert.rejects(t.engine.createVolume(vol('x'), { from: vol('nope') }), code('ZOMG_VOLUME_NOT_FOUND'));
    await assert.rejects(t.engine.createVolume(vol('x'), { from: vol('data'), fromSnapshot: 'nope' }), code('ZOMG_VOLUME_SNAPSHOT_NOT_FOUND'));
    await assert.rejects(t.engine.createVolume(vol('x'), { fromSnapshot: 'v0' }), code('ZOMG_INVALID_ARGUMENT'));
    await assert.rejects(t.engine.createVolume(vol('x'), { from: vol('shared') }), code('ZOMG_VOLUME_NOT_FOUND'), 'another project needs project:');
    await assert.rejects(t.engine.deleteVolume(vol('nope')), code('ZOMG_VOLUME_NOT_FOUND'));
    await assert.rejects(t.engine.createVolumeSnapshot(vol('data'), { name: 'v0' }), code('ZOMG_VOLUME_SNAPSHOT_EXISTS'));
    await assert.rejects(t.engine.restoreVolumeSnapshot(vol('data'), 'nope'), code('ZOMG_VOLUME_SNAPSHOT_NOT_FOUND'));
    await assert.rejects(t.engine.deleteVolumeSnapshot(vol('nope'), 'v0'), code('ZOMG_VOLUME_NOT_FOUND'));
    await assert.rejects(t.engine.getVolume(vol('x')), code('ZOMG_VOLUME_NOT_FOUND'));
    await assertConsistent();
  });

  it('refuses every bad -d mount before anything is made', async () => {
    const cases: Array<[Array<{ name: string; path: string; read_only?: boolean }>, string]> = [
      [[{ name: 'data', path: 'rel/path' }], 'ZOMG_INVALID_DATA_MOUNT'],
      [[{ name: 'data', path: '/' }], 'ZOMG_INVALID_DATA_MOUNT'],
      [[{ name: 'data', path: '/proc/x' }], 'ZOMG_INVALID_DATA_MOUNT'],
      [[{ name: 'data', path: '/sys' }], 'ZOMG_INVALID_DATA_MOUNT'],
      [[{ name: 'data', path: '/dev/data' }], 'ZOMG_INVALID_DATA_MOUNT'],
      [[{ name: 'data', path: '/box/data' }], 'ZOMG_INVALID_DATA_MOUNT'],
      [[{ name: 'data', path: '/home/me' }], 'ZOMG_INVALID_DATA_MOUNT'],
      [[{ name: 'data', path: '/srv/../etc' }], 'ZOMG_INVALID_DATA_MOUNT'],
      [[{ name: 'data', path: '/srv' }, { name: 'clone', path: '/srv' }], 'ZOMG_INVALID_DATA_MOUNT'],
      [[{ name: 'data', path: '/srv' }, { name: 'clone', path: '/srv/inner' }], 'ZOMG_INVALID_DATA_MOUNT'],
      [[{ name: 'data', path: '/a' }, { name: 'data', path: '/b' }], 'ZOMG_INVALID_DATA_MOUNT'],
      [[{ name: 'shared', path: '/srv' }], 'ZOMG_VOLUME_NOT_FOUND'],
      [[{ name: 'nope', path: '/srv' }], 'ZOMG_VOLUME_NOT_FOUND'],
      [[{ name: 'Bad', path: '/srv' }], 'ZOMG_INVALID_NAME'],
    ];
    for (const [mounts, c] of cases) await assert.rejects(t.engine.createBox(ref('bad'), { base: 'bb', dataMounts: mounts }), code(c), JSON.stringify(mounts));
    assert.deepEqual((await t.engine.listBoxes()).map((b) => b.name), []);
    assert.deepEqual(readdirSync(join(t.pool.mnt, 'roots')), []);
  });

  it('mounts volumes in a box (read-only enforced by the kernel), across stop and resume', async () => {
    const box = await t.engine.createBox(ref('web'), {
      base: 'bb',
      dataMounts: [
        { name: 'data', path: '/srv/data' },
        { name: 'clone', path: '/mnt/ro', read_only: true },
        { name: 'other:shared', path: '/shared' },
      ],
    });
    assert.deepEqual(box.data_mounts, [
      { name: 'data', path: '/srv/data', read_only: false },
      { name: 'clone', path: '/mnt/ro', read_only: true },
      { name: 'other:shared', path: '/shared', read_only: false },
    ]);
    assert.equal((await run('web', ['cat', '/srv/data/hello'])).stdout, 'v2');
    assert.equal((await run('web', ['sh', '-c', 'echo written > /srv/data/from-box'])).exit_code, 0);
    const data = await t.engine.getVolume(vol('data'));
    assert.equal(readFileSync(join(vpath(data.id), 'from-box'), 'utf8'), 'written\n');
    const ro = await run('web', ['sh', '-c', 'echo x > /mnt/ro/nope']);
    assert.notEqual(ro.exit_code, 0);
    assert.match(ro.stderr, /Read-only file system/);
    assert.deepEqual(data.attached, [{ box: 'web', project: 'default', path: '/srv/data', read_only: false }]);
    assert.deepEqual((await t.engine.getVolume(vol('shared', 'other'))).attached, [{ box: 'web', project: 'default', path: '/shared', read_only: false }]);
    await t.engine.stopBox(ref('web'));
    await t.engine.resumeBox(ref('web'));
    assert.equal((await run('web', ['cat', '/srv/data/from-box'])).stdout, 'written\n');
    await assert.rejects(t.engine.deleteVolume(vol('data')), (err: unknown) => code('ZOMG_VOLUME_ATTACHED')(err) && /default:web/.test((err as Error).message));
    // a second engine (another process) sees the same mounts after reopening
    const e2 = await t.reopen();
    assert.deepEqual((await e2.getBox(ref('web'))).data_mounts.map((m) => m.name), ['data', 'clone', 'other:shared']);
  });

  it('attaches and detaches on a stopped box, and refuses while it runs', async () => {
    await t.engine.createVolume(vol('extra'));
    await assert.rejects(t.engine.attachVolume(ref('web'), { name: 'extra', path: '/extra' }), (err: unknown) => code('ZOMG_BOX_RUNNING')(err) && /zomg stop/.test((err as ZomgError).hint ?? ''));
    await assert.rejects(t.engine.detachVolume(ref('web'), 'clone'), code('ZOMG_BOX_RUNNING'));
    await t.engine.stopBox(ref('web'));
    await assert.rejects(t.engine.attachVolume(ref('web'), { name: 'extra', path: '/srv/data/x' }), code('ZOMG_INVALID_DATA_MOUNT'));
    await assert.rejects(t.engine.attachVolume(ref('web'), { name: 'data', path: '/other' }), code('ZOMG_VOLUME_ALREADY_ATTACHED'));
    await assert.rejects(t.engine.attachVolume(ref('web'), { name: 'nope', path: '/other' }), code('ZOMG_VOLUME_NOT_FOUND'));
    await assert.rejects(t.engine.detachVolume(ref('web'), 'extra'), code('ZOMG_VOLUME_NOT_ATTACHED'));
    const box = await t.engine.attachVolume(ref('web'), { name: 'extra', path: '/extra', read_only: true });
    assert.equal(box.data_mounts.at(-1)?.name, 'extra');
    await t.engine.detachVolume(ref('web'), 'clone');
    await t.engine.resumeBox(ref('web'));
    assert.equal((await run('web', ['sh', '-c', 'test -d /extra && ! test -e /mnt/ro/hello && echo ok'])).stdout, 'ok\n');
    assert.deepEqual((await t.engine.getVolume(vol('clone'))).attached, []);
  });

  it('keeps volume data out of root snapshots, restores, base saves and root diffs', async () => {
    const box = await t.engine.getBox(ref('web'));
    await t.engine.createSnapshot(ref('web'));
    await run('web', ['sh', '-c', 'echo root > /root-file && echo vol > /srv/data/vol-file']);
    const cp = await t.engine.createSnapshot(ref('web'));
    const cpDir = join(t.pool.mnt, 'checkpoints', box.id, cp.name);
    assert.ok(existsSync(join(cpDir, 'root-file')));
    assert.deepEqual(readdirSync(join(cpDir, 'srv', 'data')), [], 'the snapshot holds the empty mount point only');
    const status = await t.engine.diffStatus(ref('web'), { against: 'v0' });
    assert.deepEqual(status.changes.map((c) => c.path), ['/root-file']);
    await assert.rejects(t.engine.diffFile(ref('web'), '/srv/data/vol-file'), (err: unknown) => code('ZOMG_PATH_EXCLUDED')(err) && /"data"/.test((err as Error).message));
    await assert.rejects(t.engine.diffFile(ref('web'), '/etc/../srv/data/vol-file'), code('ZOMG_PATH_EXCLUDED'));
    const saved = await t.engine.saveBase('saved', ref('web'));
    assert.deepEqual(readdirSync(join(t.pool.mnt, 'bases', saved.name, 'srv', 'data')), []);
    await t.engine.restoreSnapshot(ref('web'), 'v0');
    assert.equal((await run('web', ['cat', '/srv/data/vol-file'])).stdout, 'vol\n', 'a root restore leaves the volume alone');
    assert.equal((await run('web', ['sh', '-c', 'test -e /root-file || echo gone'])).stdout, 'gone\n');
  });

  it('forks clone attached volumes into box-owned volumes deleted with their owner', async () => {
    const fork = await t.engine.createBox(ref('a-very-long-fork-name-that-goes-on-and-on-and-on-x'), { fork: ref('web') });
    assert.equal(fork.data_mounts.length, 3);
    for (const m of fork.data_mounts) assert.match(m.name, /^box-a-very-long-fork-name-that-goes-on-and-on-and-[0-9a-f]{12}$|^box-[a-z0-9-]+-[0-9a-f]{12}$/);
    for (const m of fork.data_mounts) assert.ok(m.name.length <= 63 && !m.name.includes('--'), m.name);
    assert.deepEqual(fork.data_mounts.map((m) => [m.path, m.read_only]), [['/srv/data', false], ['/shared', false], ['/extra', true]]);
    const owned = await t.engine.getVolume(vol(fork.data_mounts[0]?.name as string));
    assert.equal(owned.ownership, 'box_owned');
    assert.equal(owned.delete_with_owner, true);
    assert.equal(owned.owner, `default:${fork.name}`);
    assert.equal(owned.source, 'data');
    const r = await t.engine.exec(ref(fork.name), { command: ['sh', '-c', 'cat /srv/data/vol-file; echo forked > /srv/data/vol-file'] }, { stdout: new Writable({ write: (_c, _e, cb) => cb() }), stderr: new Writable({ write: (_c, _e, cb) => cb() }) });
    assert.equal(r.exit_code, 0);
    assert.equal((await run('web', ['cat', '/srv/data/vol-file'])).stdout, 'vol\n', 'the fork writes to its own clone');
    await t.engine.deleteBox(ref(fork.name));
    for (const m of fork.data_mounts) await assert.rejects(t.engine.getVolume(vol(m.name)), code('ZOMG_VOLUME_NOT_FOUND'));
    assert.ok(!existsSync(vpath(owned.id)));
    await assertConsistent();
  });

  it('snapshots, diffs and restores a volume mounted in a running box (stopped and resumed for the swap)', async () => {
    const data = await t.engine.getVolume(vol('data'));
    const s1 = await t.engine.createVolumeSnapshot(vol('data'), { description: 'before' });
    assert.equal(s1.name, 'v1');
    await run('web', ['sh', '-c', 'echo changed > /srv/data/hello && echo new > /srv/data/added && rm /srv/data/from-box']);
    const status = await t.engine.volumeDiffStatus(vol('data'));
    assert.equal(status.against, 'v1');
    assert.deepEqual(status.changes.map((c) => `${c.kind} ${c.path}`), ['added /added', 'deleted /from-box', 'modified /hello']);
    const file = await t.engine.volumeDiffFile(vol('data'), '/hello');
    assert.equal(file.status, 'modified');
    assert.match(file.diff ?? '', /-v2\n[^]*\+changed/);
    const s2 = await t.engine.createVolumeSnapshot(vol('data'), { name: 'after' });
    assert.deepEqual((await t.engine.volumeDiffStatus(vol('data'), { against: 'v1', to: 'after' })).changes.length, 3);
    await t.engine.restoreVolumeSnapshot(vol('data'), 'v1');
    assert.equal((await t.engine.getBox(ref('web'))).status, 'running', 'resumed after the swap');
    assert.equal((await run('web', ['cat', '/srv/data/hello'])).stdout, 'v2');
    await t.engine.restoreVolumeSnapshot(vol('data'), s2.name);
    assert.equal((await run('web', ['cat', '/srv/data/hello'])).stdout, 'changed\n', 'forward again');
    assert.deepEqual((await t.engine.listVolumeSnapshots(vol('data'))).map((s) => s.name), ['v0', 'v1', 'after']);
    assert.deepEqual(readdirSync(join(t.pool.mnt, 'volumes')).filter((n) => n.startsWith(data.id)), [data.id]);
    await t.engine.deleteVolumeSnapshot(vol('data'), 'after');
    await assert.rejects(t.engine.volumeDiffStatus(vol('clone')), code('ZOMG_NO_SNAPSHOT'));
    await assertConsistent();
  });

  it('streams a volume diff to a sink (head, then changes in path order) as volumeDiffStatus collects it, holding the lock and the temporary snapshot until delivered', async () => {
    const v = await t.engine.createVolume(vol('streamed'));
    const dir = vpath(v.id);
    writeFileSync(join(dir, 'keep'), '1');
    writeFileSync(join(dir, 'gone'), '1');
    await t.engine.createVolumeSnapshot(vol('streamed'));
    writeFileSync(join(dir, 'keep'), '2');
    rmSync(join(dir, 'gone'));
    for (let i = 0; i < 50; i++) writeFileSync(join(dir, `new-${String(i).padStart(2, '0')}`), `${i}`);
    const temporaries = () => readdirSync(join(t.pool.mnt, 'staging')).filter((n) => /^\d+-vdiff-/.test(n));

    const heads: unknown[] = [];
    const changes: string[] = [];
    let snapshotTaken = false;
    let snapshot: Promise<unknown> | undefined;
    await t.engine.volumeDiffStatusStream(vol('streamed'), {
      head: (h) => void heads.push(h),
      change: async (e) => {
        changes.push(`${e.kind} ${e.path.toString()}`);
        assert.equal(temporaries().length, 1, 'the live volume is compared through a temporary snapshot, held while changes are delivered');
        if (changes.length === 1) {
          // A mutation of the volume waits for the diff's lock.
          snapshot = t.engine.createVolumeSnapshot(vol('streamed')).then(() => (snapshotTaken = true));
          await new Promise((resolve) => setTimeout(resolve, 300));
        }
      },
    });
    assert.equal(snapshotTaken, false, 'the volume stayed locked until the last change was delivered');
    assert.deepEqual(temporaries(), []);
    await snapshot;
    const whole = await t.engine.volumeDiffStatus(vol('streamed'), { against: 'v0' });
    const { changes: wholeChanges, ...head } = whole;
    assert.deepEqual(heads, [head]);
    assert.deepEqual(Object.keys(head), ['volume', 'project', 'against', 'to', 'method']);
    assert.equal(whole.method, 'tree');
    assert.deepEqual(changes, wholeChanges.map((c) => `${c.kind} ${c.path}`));
    assert.deepEqual(changes.slice(0, 2), ['deleted /gone', 'modified /keep']);
    assert.equal(changes.length, 52);

    // A sink that fails ends the diff with its error and lets go of both.
    const broken = new Error('the reader went away');
    await assert.rejects(
      t.engine.volumeDiffStatusStream(vol('streamed'), { head: () => undefined, change: () => Promise.reject(broken) }, { against: 'v0' }),
      (err) => err === broken,
    );
    assert.deepEqual(temporaries(), []);
    // So does an abort.
    const abort = new AbortController();
    await assert.rejects(
      t.engine.volumeDiffStatusStream(vol('streamed'), { head: () => undefined, change: () => void abort.abort(new Error('aborted')) }, { against: 'v0', signal: abort.signal }),
    );
    assert.deepEqual(temporaries(), []);
    assert.equal((await t.engine.createVolumeSnapshot(vol('streamed'))).name, 'v2', 'the lock was released');
    await assert.rejects(t.engine.volumeDiffStatusStream(vol('streamed'), { head: () => undefined, change: () => undefined }, { against: 'nope' }), code('ZOMG_VOLUME_SNAPSHOT_NOT_FOUND'));
    await t.engine.deleteVolume(vol('streamed'));
    await assertConsistent();
  });

  it('leaves no orphan and no half-made volume when killed (-9) at any step', async () => {
    await t.engine.stopBox(ref('web'));
    /** Runs the call in another process killed at `step`, then lets the reconciler (a fresh engine) repair. */
    const crash = async (step: string, method: string, args: unknown[]) => {
      const r = spawnSync(process.execPath, [CRASH_CHILD, JSON.stringify({ stateDir: t.stateDir, poolPath: t.pool.mnt, step, method, args })], { encoding: 'utf8' });
      assert.equal(r.signal, 'SIGKILL', `${method} at ${step}: ${r.stderr}`);
      const repaired = await t.reopen();
      await repaired.close();
      await assertConsistent();
    };
    const before = (await t.engine.listVolumes()).map((v) => v.name);
    await crash('volume:placed', 'createVolume', [vol('crashed'), {}]);
    await crash('volume:placed', 'createVolume', [vol('crashed'), { from: vol('data') }]);
    await crash('volume-snapshot:placed', 'createVolumeSnapshot', [vol('data'), { name: 'crashed' }]);
    assert.deepEqual((await t.engine.listVolumes()).map((v) => v.name), before);
    assert.deepEqual((await t.engine.listVolumeSnapshots(vol('data'))).map((s) => s.name), ['v0', 'v1']);
    const data = await t.engine.getVolume(vol('data'));
    // a restore cut short before its commit is undone; one cut short after it is finished
    await crash('volume-restore:aside', 'restoreVolumeSnapshot', [vol('data'), 'v0']);
    assert.equal(readFileSync(join(vpath(data.id), 'hello'), 'utf8'), 'changed\n');
    await crash('volume-restore:committed', 'restoreVolumeSnapshot', [vol('data'), 'v1']);
    assert.equal(readFileSync(join(vpath(data.id), 'hello'), 'utf8'), 'v2');
    await crash('volume-delete:row-deleted', 'deleteVolume', [vol('clone')]);
    await assert.rejects(t.engine.getVolume(vol('clone')), code('ZOMG_VOLUME_NOT_FOUND'));
    await t.engine.resumeBox(ref('web'));
  });
});
