import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ZomgError } from '../../src/core/errors.js';
import type { BoxName, ProjectName } from '../../src/core/names.js';
import { type TestEngine, makeTestEngine } from '../helpers/engine.js';
import { busyboxRootfsTar } from '../helpers/fixtures.js';
import { isRoot } from '../helpers/pool.js';

const ref = (name: string, project = 'default') => ({ project: project as ProjectName, name: name as BoxName });
const code = (c: string) => (err: unknown) => (err as ZomgError).code === c;

describe('engine: bases and boxes on real btrfs', { skip: !isRoot() && 'needs root for btrfs' }, () => {
  let t: TestEngine;
  let tar: string;
  let basesDir: string;
  let clock = new Date('2026-11-24T09:30:00Z');

  before(async () => {
    tar = busyboxRootfsTar();
    basesDir = mkdtempSync(join(tmpdir(), 'zomg-bases-'));
    mkdirSync(join(basesDir, 'tiny'));
    writeFileSync(join(basesDir, 'tiny', 'build.sh'), `#!/bin/bash\nset -euo pipefail\ntar --numeric-owner -xpf ${tar} -C "$1"\n`);
    t = await makeTestEngine({ maintainedBasesDir: basesDir, now: () => clock });
  });
  after(async () => {
    await t?.cleanup();
    rmSync(basesDir, { recursive: true, force: true });
  });

  it('imports a tarball as version and alias with exactly the name, then timestamped versions', async () => {
    const v1 = await t.engine.importBase('bb', tar);
    assert.equal(v1.name, 'bb');
    assert.equal(v1.provenance.kind, 'import');
    const v2 = await t.engine.importBase('bb', tar);
    assert.equal(v2.name, 'bb-v20261124093000');
    // Same second again: never collides, never overwrites.
    const v3 = await t.engine.importBase('bb', tar);
    assert.equal(v3.name, 'bb-v20261124093001');
    const list = await t.engine.listBases();
    assert.deepEqual(list.map((b) => [b.name, b.latest_version]), [['bb', 'bb-v20261124093001']]);
    const details = await t.engine.inspectBase('bb');
    assert.deepEqual(details.versions.map((v) => v.name), ['bb', 'bb-v20261124093000', 'bb-v20261124093001']);
    // Versions are read-only subvolumes.
    assert.throws(() => writeFileSync(join(t.pool.mnt, 'bases', 'bb', 'x'), 'x'), /EROFS|read-only/i);
  });

  it('imports on top of a parent', async () => {
    const layer = mkdtempSync(join(tmpdir(), 'zomg-layer-'));
    mkdirSync(join(layer, 'opt'));
    writeFileSync(join(layer, 'opt', 'hello'), 'layered\n');
    const layerTar = join(layer, 'layer.tar');
    execFileSync('tar', ['-C', layer, '-cf', layerTar, 'opt']);
    const v = await t.engine.importBase('layered', layerTar, { parent: 'bb' });
    rmSync(layer, { recursive: true, force: true });
    assert.equal(v.provenance.build.parent_alias, 'bb');
    const root = join(t.pool.mnt, 'bases', v.name);
    assert.equal(readFileSync(join(root, 'opt', 'hello'), 'utf8'), 'layered\n');
    assert.ok(existsSync(join(root, 'bin', 'busybox')));
  });

  it('creates boxes from an alias, an exact version and alias:<sha prefix>; pins stay pinned', async () => {
    const a = await t.engine.createBox(ref('a'), { base: 'bb' });
    assert.equal(a.base, 'bb-v20261124093001');
    const pinned = await t.engine.createBox(ref('pinned'), { base: 'bb-v20261124093000' });
    assert.equal(pinned.base, 'bb-v20261124093000');
    const installed = await t.engine.installBase('tiny');
    assert.equal(installed.status, 'installed');
    const sha = createHash('sha256').update(readFileSync(join(basesDir, 'tiny', 'build.sh'))).digest('hex');
    assert.equal(installed.version.provenance.build.script_sha256, sha);
    const tagged = await t.engine.createBox(ref('tagged'), { base: `tiny:${sha.slice(0, 8)}` });
    assert.equal(tagged.base, 'tiny');
    // A box root is a writable clone.
    writeFileSync(join(t.pool.mnt, 'roots', a.id, 'etc', 'note'), 'mine');
    assert.ok(!existsSync(join(t.pool.mnt, 'bases', a.base, 'etc', 'note')));
    await assert.rejects(t.engine.createBox(ref('bad'), { base: 'tiny:ffffffff' }), code('ZOMG_BASE_NOT_FOUND'));
    await assert.rejects(t.engine.createBox(ref('a'), { base: 'bb' }), code('ZOMG_BOX_EXISTS'));
    await assert.rejects(t.engine.createBox(ref('c'), { base: 'nope' }), code('ZOMG_BASE_NOT_FOUND'));
    await assert.rejects(t.engine.createBox(ref('c'), { base: 'bb', fork: ref('a') }), code('ZOMG_INVALID_ARGUMENT'));
    const fork = await t.engine.createBox(ref('forked'), { fork: ref('a') });
    assert.equal(readFileSync(join(t.pool.mnt, 'roots', fork.id, 'etc', 'note'), 'utf8'), 'mine');
  });

  it('install is idempotent by script tag, and --update rebuilds', async () => {
    const again = await t.engine.installBase('tiny');
    assert.equal(again.status, 'up_to_date');
    clock = new Date('2026-11-24T10:00:00Z');
    const updated = await t.engine.installBase('tiny', { update: true });
    assert.equal(updated.status, 'installed');
    assert.equal(updated.version.name, 'tiny-v20261124100000');
    await assert.rejects(t.engine.installBase('no-such-base'), code('ZOMG_BASE_NOT_MAINTAINED'));
  });

  it('inspect filters by tag', async () => {
    const all = await t.engine.inspectBase('tiny');
    assert.equal(all.versions.length, 2);
    assert.equal(all.latest_version, 'tiny-v20261124100000');
    const sha = all.versions[0]?.provenance.build.script_sha256 ?? '';
    assert.equal((await t.engine.inspectBase('tiny', { tag: sha.slice(0, 10) })).versions.length, 2);
    assert.equal((await t.engine.inspectBase('tiny', { tag: 'abcdef0' })).versions.length, 0);
    await assert.rejects(t.engine.inspectBase('missing'), code('ZOMG_BASE_NOT_FOUND'));
  });

  it('lists, filters and deletes boxes', async () => {
    await t.engine.createBox(ref('other', 'proj2'), { base: 'bb', tags: { env: 'ci' } });
    assert.deepEqual((await t.engine.listBoxes({ project: 'proj2' })).map((b) => b.name), ['other']);
    assert.equal((await t.engine.listBoxes()).length, 5);
    assert.deepEqual((await t.engine.listBoxes({ tags: { env: 'ci' } })).map((b) => b.name), ['other']);
    const box = await t.engine.getBox(ref('other', 'proj2'));
    await t.engine.deleteBox(ref('other', 'proj2'));
    assert.ok(!existsSync(join(t.pool.mnt, 'roots', box.id)));
    await assert.rejects(t.engine.getBox(ref('other', 'proj2')), code('ZOMG_BOX_NOT_FOUND'));
    await assert.rejects(t.engine.deleteBox(ref('other', 'proj2')), code('ZOMG_BOX_NOT_FOUND'));
  });

  it('deletes aliases and versions by the rules', async () => {
    await assert.rejects(t.engine.deleteBaseVersion('bb-v20261124093001'), code('ZOMG_VERSION_IN_USE'));
    await t.engine.deleteBaseVersion('bb-v20261124093000'); // the box pinned to it is unaffected
    const pinned = await t.engine.getBox(ref('pinned'));
    assert.ok(existsSync(join(t.pool.mnt, 'roots', pinned.id, 'bin', 'busybox')));
    await t.engine.deleteBaseAlias('bb');
    assert.deepEqual((await t.engine.listBases()).map((b) => b.name).sort(), ['layered', 'tiny']);
    // Versions stay reachable by exact name.
    const again = await t.engine.createBox(ref('by-version'), { base: 'bb-v20261124093001' });
    assert.equal(again.base, 'bb-v20261124093001');
    await t.engine.deleteBaseVersion('bb-v20261124093001');
    await assert.rejects(t.engine.deleteBaseAlias('bb'), code('ZOMG_ALIAS_NOT_FOUND'));
    await assert.rejects(t.engine.deleteBaseVersion('bb-v20261124093001'), code('ZOMG_VERSION_NOT_FOUND'));
  });

  it('rejects every bad name with a stable code and the rule', async () => {
    for (const bad of ['', 'UPPER', 'a--b', '-lead', 'trail-', 'x'.repeat(64), 'sp ace', 'dot.ted']) {
      await assert.rejects(t.engine.importBase(bad, tar), (err: unknown) => code('ZOMG_INVALID_NAME')(err) && /1-63 characters/.test((err as Error).message), bad);
    }
  });

  it('refuses bad archives and foreign rootfs with stable codes, recording nothing and leaving no staging', async () => {
    const { arm64RootfsTar, noElfRootfsTar, notATar, truncatedZst } = await import('../helpers/fixtures.js');
    const cases: Array<[string, string]> = [
      [arm64RootfsTar(), 'ZOMG_WRONG_ARCH'],
      [noElfRootfsTar(), 'ZOMG_WRONG_ARCH'],
      [notATar(), 'ZOMG_INVALID_ARCHIVE'],
      [truncatedZst(), 'ZOMG_INVALID_ARCHIVE'],
      ['/no/such/file.tar', 'ZOMG_FILE_NOT_FOUND'],
      [tmpdir(), 'ZOMG_NOT_A_FILE'],
    ];
    for (const [file, c] of cases) {
      await assert.rejects(t.engine.importBase('refused', file), code(c), file);
    }
    await assert.rejects(t.engine.inspectBase('refused'), code('ZOMG_BASE_NOT_FOUND'));
    assert.deepEqual(readdirSync(join(t.pool.mnt, 'staging')), []);
  });

  it('computes sizes off the hot path', async () => {
    assert.equal((await t.engine.inspectBase('tiny')).versions[0]?.size_bytes, null);
    await t.engine.computeSizes();
    assert.ok(((await t.engine.inspectBase('tiny')).versions[0]?.size_bytes ?? 0) > 1_000_000);
  });

  it('reconciles staging leftovers, rows without subvolumes and subvolumes without rows', async () => {
    const staging = join(t.pool.mnt, 'staging', '999999-import-dead');
    execFileSync('btrfs', ['subvolume', 'create', staging], { stdio: 'ignore' });
    const stray = join(t.pool.mnt, 'bases', 'stray');
    execFileSync('btrfs', ['subvolume', 'create', stray], { stdio: 'ignore' });
    const victim = await t.engine.getBox(ref('tagged'));
    execFileSync('btrfs', ['subvolume', 'delete', join(t.pool.mnt, 'roots', victim.id)], { stdio: 'ignore' });
    const e2 = await t.reopen();
    assert.ok(!existsSync(staging));
    assert.ok(!existsSync(stray));
    await assert.rejects(e2.getBox(ref('tagged')), code('ZOMG_BOX_NOT_FOUND'));
    assert.ok((await e2.getBox(ref('a'))).id);
  });
});
