/**
 * Volume backups on real btrfs to real directories on other filesystems (ext4 /tmp, a
 * tmpfs): full then incremental streams with manifests, restores of the chain into another
 * state directory and pool, verification, every bad target and damaged backup, kill -9.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import type { ZomgError } from '../../src/core/errors.js';
import type { ProjectName, SafeName } from '../../src/core/names.js';
import { type TestEngine, makeTestEngine } from '../helpers/engine.js';
import { isRoot } from '../helpers/pool.js';

const vol = (name: string, project = 'default') => ({ project: project as ProjectName, name: name as SafeName });
const code = (c: string) => (err: unknown) => {
  assert.equal((err as ZomgError).code, c, (err as Error).message);
  return true;
};
const CRASH_CHILD = fileURLToPath(new URL('../helpers/crash-child.js', import.meta.url));

describe('engine: volume backups', { skip: !isRoot() && 'needs root for btrfs' }, () => {
  let t: TestEngine;
  let other: TestEngine;
  let scratch: string;
  let target: string;
  let url: string;
  let tmpfs: string;
  const vpath = (e: TestEngine, id: string) => join(e.pool.mnt, 'volumes', id);

  before(async () => {
    [t, other] = await Promise.all([makeTestEngine(), makeTestEngine()]);
    scratch = mkdtempSync(join(tmpdir(), 'zomg-backups-'));
    target = join(scratch, 'target');
    mkdirSync(target);
    url = `file://${target}`;
    tmpfs = join(scratch, 'tmpfs');
    mkdirSync(tmpfs);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64m', 'tmpfs', tmpfs]);
  });
  after(async () => {
    if (tmpfs) spawnSync('umount', [tmpfs]);
    await Promise.all([t?.cleanup(), other?.cleanup()]);
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  it('backs up full, then incrementally, with a manifest next to each stream', async () => {
    const v = await t.engine.createVolume(vol('db'));
    const dir = vpath(t, v.id);
    mkdirSync(join(dir, 'tables'));
    for (let i = 0; i < 50; i++) writeFileSync(join(dir, 'tables', `t${i}`), `row ${i}\n`.repeat(200));
    const full = await t.engine.createBackup(vol('db'), { to: url });
    assert.equal(full.name, 'v0');
    assert.equal(full.kind, 'full');
    assert.equal(full.parent, null);
    writeFileSync(join(dir, 'tables', 't1'), 'changed\n');
    rmSync(join(dir, 'tables', 't2'));
    writeFileSync(join(dir, 'new'), 'new file\n');
    const inc = await t.engine.createBackup(vol('db'), { to: url });
    assert.deepEqual([inc.name, inc.kind, inc.parent], ['v1', 'incremental', 'v0']);
    assert.ok(inc.stream_bytes < full.stream_bytes / 5, `${inc.stream_bytes} vs ${full.stream_bytes}`);
    writeFileSync(join(dir, 'new'), 'newer\n');
    const named = await t.engine.createBackup(vol('db'), { to: url, name: 'nightly' });
    assert.deepEqual([named.kind, named.parent], ['incremental', 'v1']);
    const files = readdirSync(join(target, 'default', 'db')).sort();
    assert.deepEqual(files, ['nightly.btrfs', 'nightly.json', 'v0.btrfs', 'v0.json', 'v1.btrfs', 'v1.json']);
    const manifest = JSON.parse(readFileSync(join(target, 'default', 'db', 'v1.json'), 'utf8')) as Record<string, unknown>;
    for (const k of ['volume', 'project', 'name', 'parent', 'sha256', 'stream_bytes', 'created_at']) assert.ok(k in manifest, k);
    const sha = execFileSync('sha256sum', [join(target, 'default', 'db', 'v1.btrfs')], { encoding: 'utf8' }).split(' ')[0];
    assert.equal(manifest.sha256, sha);
    // only the newest parent is kept in the pool
    assert.deepEqual(readdirSync(join(t.pool.mnt, 'volume-backups', v.id)), ['nightly']);
    assert.deepEqual((await t.engine.listBackups(url)).map((b) => b.name), ['v0', 'v1', 'nightly']);
    assert.deepEqual((await t.engine.listBackups(url, { project: 'default', volume: 'db' })).length, 3);
    assert.deepEqual(await t.engine.listBackups(url, { project: 'nope' }), []);
  });

  it('restores the chain into another state directory and pool, and into the same one', async () => {
    const restored = await other.engine.restoreBackup({ from: url, source: vol('db'), to: vol('db-copy', 'elsewhere') });
    assert.equal(restored.project, 'elsewhere');
    const src = await t.engine.getVolume(vol('db'));
    execFileSync('diff', ['-r', '--no-dereference', vpath(t, src.id), vpath(other, restored.id)]);
    // the restored volume is writable and an ordinary volume
    writeFileSync(join(vpath(other, restored.id), 'mine'), 'x');
    await other.engine.createVolumeSnapshot(vol('db-copy', 'elsewhere'));
    // an older backup of the chain
    const v1 = await t.engine.restoreBackup({ from: url, source: vol('db'), backup: 'v1', to: vol('db-v1') });
    assert.equal(readFileSync(join(vpath(t, v1.id), 'new'), 'utf8'), 'new file\n');
    assert.ok(!existsSync(join(vpath(t, v1.id), 'tables', 't2')));
    assert.deepEqual(readdirSync(join(t.pool.mnt, 'staging')), []);
    assert.deepEqual(readdirSync(join(other.pool.mnt, 'staging')), []);
    await assert.rejects(t.engine.restoreBackup({ from: url, source: vol('db'), to: vol('db-v1') }), code('ZOMG_VOLUME_EXISTS'));
    await assert.rejects(t.engine.restoreBackup({ from: url, source: vol('db'), backup: 'nope', to: vol('x') }), code('ZOMG_BACKUP_NOT_FOUND'));
    await assert.rejects(t.engine.restoreBackup({ from: url, source: vol('nope'), to: vol('x') }), code('ZOMG_BACKUP_NOT_FOUND'));
  });

  it('backs up to a tmpfs target and restores from it', async () => {
    const b = await t.engine.createBackup(vol('db'), { to: `file://${tmpfs}` });
    assert.equal(b.kind, 'full', 'a new target starts a new chain');
    await t.engine.createBackup(vol('db'), { to: `file://${tmpfs}` });
    const back = await other.engine.restoreBackup({ from: `file://${tmpfs}`, source: vol('db'), to: vol('from-tmpfs') });
    const src = await t.engine.getVolume(vol('db'));
    execFileSync('diff', ['-r', vpath(t, src.id), vpath(other, back.id)]);
    // the first target's chain goes on incrementally
    assert.equal((await t.engine.createBackup(vol('db'), { to: url })).kind, 'incremental');
  });

  it('refuses bad targets, names and damaged backups with stable codes', async () => {
    await assert.rejects(t.engine.createBackup(vol('db'), { to: 'gs://bucket/x' }), code('ZOMG_UNSUPPORTED_BACKUP_TARGET'));
    await assert.rejects(t.engine.listBackups('gs://bucket/x'), code('ZOMG_UNSUPPORTED_BACKUP_TARGET'));
    await assert.rejects(t.engine.createBackup(vol('db'), { to: '/plain/path' }), code('ZOMG_INVALID_BACKUP_TARGET'));
    await assert.rejects(t.engine.createBackup(vol('db'), { to: `file://${scratch}/missing` }), code('ZOMG_BACKUP_TARGET_MISSING'));
    writeFileSync(join(scratch, 'a-file'), '');
    await assert.rejects(t.engine.createBackup(vol('db'), { to: `file://${scratch}/a-file` }), code('ZOMG_BACKUP_TARGET_NOT_DIRECTORY'));
    const ro = join(scratch, 'ro');
    mkdirSync(ro);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', ro]);
    try {
      await assert.rejects(t.engine.createBackup(vol('db'), { to: `file://${ro}` }), code('ZOMG_BACKUP_TARGET_NOT_WRITABLE'));
    } finally {
      execFileSync('umount', [ro]);
    }
    await assert.rejects(t.engine.createBackup(vol('nope'), { to: url }), code('ZOMG_VOLUME_NOT_FOUND'));
    await assert.rejects(t.engine.createBackup(vol('db'), { to: url, name: 'v0' }), code('ZOMG_BACKUP_EXISTS'));
    await assert.rejects(t.engine.restoreBackup({ from: url, source: vol('db'), backup: 'Bad_Name', to: vol('x') }), code('ZOMG_INVALID_NAME'));

    // damaged copies of the chain, in a target of their own
    const damaged = join(scratch, 'damaged');
    const copy = (name: string) => {
      rmSync(join(damaged, name), { recursive: true, force: true });
      mkdirSync(join(damaged, name), { recursive: true });
      execFileSync('cp', ['-a', join(target, 'default'), join(damaged, name, 'default')]);
      return { dir: join(damaged, name, 'default', 'db'), url: `file://${join(damaged, name)}` };
    };
    const c1 = copy('corrupt');
    const stream = readFileSync(join(c1.dir, 'v0.btrfs'));
    stream[stream.length >> 1] = (stream[stream.length >> 1] as number) ^ 0xff;
    writeFileSync(join(c1.dir, 'v0.btrfs'), stream);
    await assert.rejects(t.engine.restoreBackup({ from: c1.url, source: vol('db'), backup: 'v1', to: vol('x') }), code('ZOMG_BACKUP_CORRUPT'));
    const c2 = copy('missing-parent');
    rmSync(join(c2.dir, 'v0.json'));
    await assert.rejects(t.engine.restoreBackup({ from: c2.url, source: vol('db'), backup: 'v1', to: vol('x') }), code('ZOMG_BACKUP_CHAIN_BROKEN'));
    const c3 = copy('mismatch');
    const m = JSON.parse(readFileSync(join(c3.dir, 'v1.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(c3.dir, 'v1.json'), JSON.stringify({ ...m, sha256: 'a'.repeat(64) }));
    await assert.rejects(t.engine.restoreBackup({ from: c3.url, source: vol('db'), backup: 'v1', to: vol('x') }), code('ZOMG_BACKUP_CORRUPT'));
    writeFileSync(join(c3.dir, 'v1.json'), JSON.stringify({ ...m, volume: 'other' }));
    await assert.rejects(t.engine.restoreBackup({ from: c3.url, source: vol('db'), backup: 'v1', to: vol('x') }), code('ZOMG_BACKUP_MANIFEST_INVALID'));
    // a manifest and stream whose bytes agree but whose stream is not a btrfs stream
    const c4 = copy('forged');
    writeFileSync(join(c4.dir, 'v0.btrfs'), 'not a send stream');
    const m0 = JSON.parse(readFileSync(join(c4.dir, 'v0.json'), 'utf8')) as Record<string, unknown>;
    const sha = execFileSync('sha256sum', [join(c4.dir, 'v0.btrfs')], { encoding: 'utf8' }).split(' ')[0];
    writeFileSync(join(c4.dir, 'v0.json'), JSON.stringify({ ...m0, sha256: sha, stream_bytes: 17 }));
    await assert.rejects(t.engine.restoreBackup({ from: c4.url, source: vol('db'), backup: 'v0', to: vol('x') }), code('ZOMG_BACKUP_CORRUPT'));
    await assert.rejects(t.engine.getVolume(vol('x')), code('ZOMG_VOLUME_NOT_FOUND'));
    assert.deepEqual(readdirSync(join(t.pool.mnt, 'staging')), []);
  });

  it('never shows a half-written backup, and keeps the chain whole, after kill -9', async () => {
    const crash = async (step: string, method: string, args: unknown[]) => {
      const r = spawnSync(process.execPath, [CRASH_CHILD, JSON.stringify({ stateDir: t.stateDir, poolPath: t.pool.mnt, step, method, args })], { encoding: 'utf8' });
      assert.equal(r.signal, 'SIGKILL', `${method} at ${step}: ${r.stderr}`);
      await (await t.reopen()).close();
    };
    const listed = (await t.engine.listBackups(url)).map((b) => b.name);
    await crash('backup:snapshotted', 'createBackup', [vol('db'), { to: url, name: 'cut1' }]);
    await crash('backup:stream-written', 'createBackup', [vol('db'), { to: url, name: 'cut2' }]);
    assert.deepEqual((await t.engine.listBackups(url)).map((b) => b.name), listed);
    const v = await t.engine.getVolume(vol('db'));
    assert.deepEqual(readdirSync(join(t.pool.mnt, 'volume-backups', v.id)).length, 2, 'only the recorded parents stay (one per target)');
    await crash('backup:manifest-written', 'createBackup', [vol('db'), { to: url, name: 'cut3' }]);
    // the manifest made it: the backup is listed and restorable, its parent row was not recorded → next one is full
    const next = await t.engine.createBackup(vol('db'), { to: url, name: 'after' });
    assert.ok(next.kind === 'incremental' || next.kind === 'full');
    await t.engine.restoreBackup({ from: url, source: vol('db'), backup: 'after', to: vol('after-crash') });
    await crash('backup-restore:received', 'restoreBackup', [{ from: url, source: vol('db'), backup: 'after', to: vol('cut-restore') }]);
    await crash('backup-restore:placed', 'restoreBackup', [{ from: url, source: vol('db'), backup: 'after', to: vol('cut-restore') }]);
    await assert.rejects(t.engine.getVolume(vol('cut-restore')), code('ZOMG_VOLUME_NOT_FOUND'));
    assert.deepEqual(readdirSync(join(t.pool.mnt, 'staging')), []);
    const ids = (await t.engine.listVolumes()).map((x) => x.id).sort();
    assert.deepEqual(readdirSync(join(t.pool.mnt, 'volumes')).filter((n) => !n.startsWith('_')).sort(), ids);
  });
});
