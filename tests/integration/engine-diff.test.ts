import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ZomgError } from '../../src/core/errors.js';
import type { BoxName, ProjectName } from '../../src/core/names.js';
import { type TestEngine, makeTestEngine } from '../helpers/engine.js';
import { busyboxRootfsTar } from '../helpers/fixtures.js';
import { isRoot } from '../helpers/pool.js';

const ref = (name: string) => ({ project: 'default' as ProjectName, name: name as BoxName });
const code = (c: string) => (err: unknown) => (err as ZomgError).code === c;

describe('engine: diffs on real btrfs', { skip: !isRoot() && 'needs root for btrfs' }, () => {
  let t: TestEngine;
  let root: string;
  const staging = () => readdirSync(join(t.pool.mnt, 'staging'));
  const status = async (opts = {}) => (await t.engine.diffStatus(ref('box'), opts)).changes.map((c) => `${c.kind} ${c.path}`);

  before(async () => {
    t = await makeTestEngine();
    await t.engine.importBase('bb', busyboxRootfsTar());
    const box = await t.engine.createBox(ref('box'), { base: 'bb' });
    root = join(t.pool.mnt, 'roots', box.id);
  });
  after(async () => t?.cleanup());

  it('needs a snapshot, and says how to get one', async () => {
    await assert.rejects(t.engine.diffStatus(ref('box')), (err: unknown) => code('ZOMG_NO_SNAPSHOT')(err) && /snapshot create box/.test((err as ZomgError).hint ?? ''));
    await assert.rejects(t.engine.diffStatus(ref('nobox')), code('ZOMG_BOX_NOT_FOUND'));
  });

  it('reports added, modified and deleted paths against the latest snapshot, and No changes', async () => {
    writeFileSync(join(root, 'etc', 'motd'), 'hello\n');
    mkdirSync(join(root, 'srv', 'data'), { recursive: true });
    writeFileSync(join(root, 'srv', 'data', 'a.txt'), 'a\n');
    await t.engine.createSnapshot(ref('box'));
    assert.deepEqual(await status(), []);
    writeFileSync(join(root, 'etc', 'motd'), 'changed\n');
    writeFileSync(join(root, 'new-file'), 'n\n');
    rmSync(join(root, 'srv', 'data'), { recursive: true });
    chmodSync(join(root, 'etc', 'passwd'), 0o600);
    execFileSync('touch', ['-d', '2001-01-01', join(root, 'etc', 'group')]); // timestamps alone are no change
    const got = await t.engine.diffStatus(ref('box'));
    assert.equal(got.method, 'tree');
    assert.equal(got.against, 'v0');
    assert.deepEqual(got.changes.map((c) => `${c.kind} ${c.path}`), [
      'modified /etc/motd',
      'modified /etc/passwd',
      'added /new-file',
      'deleted /srv/data',
      'deleted /srv/data/a.txt',
    ]);
    assert.deepEqual(staging(), [], 'the temporary snapshot is always deleted');
  });

  it('diffs against a named snapshot and between two snapshots', async () => {
    await t.engine.createSnapshot(ref('box'), { name: 'second' });
    assert.deepEqual(await status(), []);
    assert.equal((await status({ against: 'v0' })).length, 5);
    assert.deepEqual(await status({ against: 'v0', to: 'second' }), await status({ against: 'v0' }));
    await assert.rejects(t.engine.diffStatus(ref('box'), { against: 'nope' }), code('ZOMG_SNAPSHOT_NOT_FOUND'));
  });

  it('excludes the volume mount points and nested subvolumes', async () => {
    mkdirSync(join(root, 'box', 'bin'), { recursive: true });
    mkdirSync(join(root, 'home', 'alice'), { recursive: true });
    execFileSync('btrfs', ['subvolume', 'create', join(root, 'var', 'nested')], { stdio: 'ignore' });
    writeFileSync(join(root, 'var', 'nested', 'inside'), 'x');
    const changes = await status({ against: 'second' });
    assert.ok(!changes.some((c) => c.includes('/box') || c.includes('/home') || c.includes('/var/nested')), changes.join('\n'));
    // The temporary snapshot is gone (it leaves nested subvolumes out: their placeholders
    // have a device of their own, like the subvolumes); so is it without one.
    assert.deepEqual(readdirSync(join(t.pool.mnt, 'staging')), []);
    execFileSync('btrfs', ['subvolume', 'delete', join(root, 'var', 'nested')], { stdio: 'ignore' });
    await status({ against: 'second' });
    assert.deepEqual(readdirSync(join(t.pool.mnt, 'staging')), []);
  });

  it('diffs one file: modified with a unified diff, added, deleted, unchanged, binary, symlink', async () => {
    const motd = await t.engine.diffFile(ref('box'), '/etc/motd', { against: 'v0' });
    assert.equal(motd.status, 'modified');
    assert.match(motd.diff ?? '', /^--- a\/etc\/motd\n\+\+\+ b\/etc\/motd\n@@ -1,1 \+1,1 @@\n-hello\n\+changed\n$/);
    assert.equal((await t.engine.diffFile(ref('box'), '/new-file', { against: 'v0' })).status, 'added');
    assert.equal((await t.engine.diffFile(ref('box'), '/srv/data/a.txt', { against: 'v0' })).status, 'deleted');
    assert.equal((await t.engine.diffFile(ref('box'), '/etc/group')).status, 'unchanged');
    writeFileSync(join(root, 'blob'), Buffer.from([0, 1, 2]));
    await t.engine.createSnapshot(ref('box'), { name: 'third' });
    writeFileSync(join(root, 'blob'), Buffer.from([0, 1, 3]));
    const bin = await t.engine.diffFile(ref('box'), '/blob');
    assert.equal(bin.status, 'modified');
    assert.equal(bin.binary, true);
    assert.equal(bin.diff, null);
    symlinkSync('/etc/motd', join(root, 'link'));
    assert.deepEqual((await t.engine.diffFile(ref('box'), '/link')).current?.target, '/etc/motd');
    assert.deepEqual(staging(), []);
  });

  it('a snapshot deleted while a diff runs: the two are serialized, both complete cleanly', async () => {
    await t.engine.createSnapshot(ref('box'), { name: 'doomed' });
    writeFileSync(join(root, 'late'), 'x');
    const running = t.engine.diffStatus(ref('box'), { against: 'doomed' });
    await new Promise((r) => setTimeout(r, 5)); // the diff holds the box lock now
    const [diff] = await Promise.all([running, t.engine.deleteSnapshot(ref('box'), 'doomed')]);
    assert.ok(diff.changes.some((c) => c.path === '/late'));
    await assert.rejects(t.engine.diffStatus(ref('box'), { against: 'doomed' }), code('ZOMG_SNAPSHOT_NOT_FOUND'));
    assert.deepEqual(staging(), []);
  });

  it('refuses paths that are relative, escape the root, are excluded, not files, or too large', async () => {
    const bad = async (path: string, c: string) => assert.rejects(t.engine.diffFile(ref('box'), path), code(c), path);
    await bad('etc/motd', 'ZOMG_INVALID_PATH');
    await bad('/../etc/shadow', 'ZOMG_PATH_ESCAPES');
    await bad('/etc/../../etc/passwd', 'ZOMG_PATH_ESCAPES');
    symlinkSync('../../../../../../../../etc', join(root, 'escape-rel'));
    await bad('/escape-rel/hostname', 'ZOMG_PATH_ESCAPES');
    // An absolute symlink means the box's own /etc, never the host's.
    symlinkSync('/etc', join(root, 'abs-etc'));
    writeFileSync(join(root, 'etc', 'only-in-box'), 'box\n');
    assert.equal((await t.engine.diffFile(ref('box'), '/abs-etc/only-in-box')).status, 'added');
    await bad('/home/alice/x', 'ZOMG_PATH_EXCLUDED');
    await bad('/box/bin/tool', 'ZOMG_PATH_EXCLUDED');
    symlinkSync('/home/alice', join(root, 'to-home'));
    await bad('/to-home/file', 'ZOMG_PATH_EXCLUDED');
    await bad('/etc', 'ZOMG_NOT_A_FILE');
    execFileSync('mkfifo', [join(root, 'fifo')]);
    await bad('/fifo', 'ZOMG_NOT_A_FILE');
    writeFileSync(join(root, 'big'), Buffer.alloc(1024 * 1024 + 1));
    await bad('/big', 'ZOMG_FILE_TOO_LARGE');
    await bad('/no/such/file', 'ZOMG_FILE_NOT_FOUND');
    assert.deepEqual(staging(), [], 'no temporary snapshot left after errors');
  });
});
