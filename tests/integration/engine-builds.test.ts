/**
 * `base build` and `base save` through the engine, on a real btrfs pool with real podman
 * (zomg's own store on the test pool, never the host's): the built base boots boxes that
 * see the RUN's effect and start from the image's ENV and WORKDIR; failures record nothing
 * and leave nothing in the store; a save is a read-only snapshot with the box's base as parent.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import type { ZomgError } from '../../src/core/errors.js';
import type { BoxName, ProjectName } from '../../src/core/names.js';
import type { ExecRequest } from '../../src/core/service.js';
import type { Progress } from '../../src/core/types.js';
import type { Engine } from '../../src/engine/engine.js';
import { type TestEngine, makeTestEngine } from '../helpers/engine.js';
import { arm64RootfsTar, busyboxRootfsTar } from '../helpers/fixtures.js';
import { hasPodman, type TestStore, testStore } from '../helpers/podman.js';
import { isRoot } from '../helpers/pool.js';

const ref = (name: string, project = 'default') => ({ project: project as ProjectName, name: name as BoxName });
const code = (c: string) => (err: unknown) => {
  assert.equal((err as ZomgError).code, c, (err as Error).message);
  return true;
};

async function run(engine: Engine, box: string, req: ExecRequest): Promise<string> {
  let out = '';
  let errText = '';
  const sink = (f: (s: string) => void) => new Writable({ write: (c: Buffer, _e, cb) => (f(c.toString()), cb()) });
  const { exit_code } = await engine.exec(ref(box), req, { stdout: sink((s) => (out += s)), stderr: sink((s) => (errText += s)) });
  assert.equal(exit_code, 0, errText);
  return out;
}

const stagingEntries = (t: TestEngine): string[] => readdirSync(join(t.pool.mnt, 'staging')).filter((n) => n !== 'podman');

describe('engine: base build with podman', { skip: !isRoot() ? 'needs root for btrfs' : !hasPodman() ? 'podman is not installed' : false, concurrency: false }, () => {
  let t: TestEngine;
  let store: TestStore;
  let work: string;
  const context = (name: string, dockerfile: string, rootfs = busyboxRootfsTar()): string => {
    const dir = join(work, name);
    mkdirSync(dir);
    execFileSync('cp', [rootfs, join(dir, 'rootfs.tar')]);
    writeFileSync(join(dir, 'Dockerfile'), dockerfile);
    return dir;
  };

  before(async () => {
    t = await makeTestEngine();
    store = testStore(t.pool.mnt);
    work = mkdtempSync(join(tmpdir(), 'zomg-builds-'));
  });
  after(async () => {
    try {
      store?.wipe();
    } finally {
      await t?.cleanup();
      if (work) rmSync(work, { recursive: true, force: true });
    }
  });

  const DOCKERFILE = [
    'FROM scratch',
    'ADD rootfs.tar /',
    'RUN mkdir -p /work && echo built-by-run > /built && echo in-workdir > /work/here',
    'ENV FOO=bar GREETING="hello world" ZOMG_PROJECT=from-image',
    'WORKDIR /work',
    'CMD ["/bin/sh"]',
    '',
  ].join('\n');
  const SHA = createHash('sha256').update(DOCKERFILE).digest('hex');

  it('builds FROM scratch into a base that boots boxes seeing the RUN, with the image ENV and WORKDIR', async () => {
    const ctx = context('scratch', DOCKERFILE);
    const events: Progress[] = [];
    const v = await t.engine.buildBase('webimg', { context: ctx, builder: 'podman', onProgress: (p) => events.push(p) });
    assert.equal(v.name, 'webimg');
    assert.equal(v.alias, 'webimg');
    assert.equal(v.provenance.kind, 'build');
    assert.equal(v.provenance.build.builder, 'podman');
    assert.equal(v.provenance.build.script, DOCKERFILE);
    assert.equal(v.provenance.build.script_sha256, SHA);
    const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
    assert.deepEqual(v.config, { env: [`PATH=${PATH}`, 'FOO=bar', 'GREETING=hello world', 'ZOMG_PROJECT=from-image'], workdir: '/work', user: null, cmd: ['/bin/sh'] });
    assert.ok(events.some((p) => p.line?.includes('RUN mkdir -p /work')), 'the build output streams line by line');
    assert.ok(events.some((p) => p.phase === 'build (podman)'));
    assert.ok(events.some((p) => /^handed over by snapshot /.test(p.phase)), 'podman on the pool hands over by snapshot');
    assert.throws(() => writeFileSync(join(t.pool.mnt, 'bases', v.name, 'x'), 'x'), /EROFS|read-only/i);

    // Found by tag, as `base inspect --tag` and `create --base <name>:<sha-prefix>` do.
    assert.deepEqual((await t.engine.inspectBase('webimg', { tag: SHA.slice(0, 10) })).versions.map((x) => x.name), ['webimg']);
    assert.equal((await t.engine.inspectBase('webimg', { tag: 'ffff' })).versions.length, 0);
    const box = await t.engine.createBox(ref('web'), { base: `webimg:${SHA.slice(0, 8)}`, environment: { GREETING: 'from-create' } });
    assert.equal(box.base, 'webimg');
    assert.equal(await run(t.engine, 'web', { command: ['cat', '/built'] }), 'built-by-run\n');
    // WORKDIR is where an exec starts; ENV is there, under `create -e` and `--env`; the
    // reserved ZOMG_* keys stay zomg's.
    assert.equal(await run(t.engine, 'web', { command: ['cat', 'here'] }), 'in-workdir\n');
    assert.equal(await run(t.engine, 'web', { command: ['pwd'] }), '/work\n');
    assert.equal(await run(t.engine, 'web', { command: ['pwd'], cwd: '/tmp' }), '/tmp\n');
    assert.equal(await run(t.engine, 'web', { command: ['echo $FOO/$GREETING/$ZOMG_PROJECT'], shell: true }), 'bar/from-create/default\n');
    assert.equal(await run(t.engine, 'web', { command: ['echo $FOO'], shell: true, env: { FOO: 'per-exec' } }), 'per-exec\n');
    // The image's PATH, with the box tools still reachable.
    assert.equal(await run(t.engine, 'web', { command: ['echo $PATH'], shell: true }), `${PATH}:/box/bin\n`);
    assert.deepEqual(store.leftovers(), { images: '', containers: '' });
    assert.deepEqual(stagingEntries(t), []);
  });

  it('builds FROM an image imported locally (offline), as a new version; the export hand-over gives the same base', async () => {
    store.podman('import', '-q', busyboxRootfsTar(), 'localhost/zomg-test-imported:1');
    const dockerfile = 'FROM localhost/zomg-test-imported:1\nRUN echo derived > /derived\nUSER nobody\n';
    const ctx = context('imported', dockerfile);
    // A second engine on the same state forcing the slow path: the result must not differ.
    const slow = await t.reopen({ buildHandover: 'export' });
    const events: Progress[] = [];
    const v = await slow.buildBase('webimg', { context: ctx, onProgress: (p) => events.push(p) });
    assert.match(v.name, /^webimg-v\d{14}$/);
    assert.equal((await t.engine.inspectBase('webimg')).latest_version, v.name);
    assert.equal(v.provenance.build.script_sha256, createHash('sha256').update(dockerfile).digest('hex'));
    assert.equal(v.config?.user, 'nobody');
    assert.ok(events.some((p) => /^handed over by export /.test(p.phase)));
    await t.engine.createBox(ref('derived'), { base: 'webimg' });
    assert.equal(await run(t.engine, 'derived', { command: ['cat', '/derived'] }), 'derived\n');
    assert.equal(await run(t.engine, 'derived', { command: ['pwd'] }), '/root\n', 'no WORKDIR: the usual default');
    // Only what zomg built went: the imported image stays.
    assert.equal(store.podman('images', '--format', '{{.Repository}}:{{.Tag}}').trim(), 'localhost/zomg-test-imported:1');
    store.podman('rmi', 'localhost/zomg-test-imported:1');
    assert.deepEqual(store.leftovers(), { images: '', containers: '' });
  });

  it('refuses bad input with stable codes, recording nothing and leaving nothing behind', async () => {
    const before = JSON.stringify(await t.engine.inspectBase('webimg'));
    const failing = context('failing', 'FROM scratch\nADD rootfs.tar /\nRUN echo boom-marker-42 && false\n');
    const lines: string[] = [];
    await assert.rejects(t.engine.buildBase('webimg', { context: failing, onProgress: (p) => p.line && lines.push(p.line) }), (err: unknown) => {
      code('ZOMG_BUILD_FAILED')(err);
      assert.match((err as Error).message, /boom-marker-42/);
      return true;
    });
    assert.ok(lines.some((l) => l.includes('boom-marker-42')));
    // podman stamps amd64 on anything; the binaries say arm64.
    const arm = context('arm', 'FROM scratch\nADD rootfs.tar /\n', arm64RootfsTar());
    await assert.rejects(t.engine.buildBase('webimg', { context: arm }), (err: unknown) => {
      code('ZOMG_WRONG_ARCH')(err);
      assert.match((err as Error).message, /aarch64/);
      return true;
    });
    const empty = join(work, 'empty');
    mkdirSync(empty);
    await assert.rejects(t.engine.buildBase('webimg', { context: empty }), (err: unknown) => {
      code('ZOMG_NO_DOCKERFILE')(err);
      assert.match((err as Error).message, /empty\/Dockerfile/);
      return true;
    });
    await assert.rejects(t.engine.buildBase('webimg', { context: failing, dockerfile: join(work, 'nope') }), code('ZOMG_NO_DOCKERFILE'));
    await assert.rejects(t.engine.buildBase('webimg', { context: join(work, 'missing-dir'), dockerfile: join(failing, 'Dockerfile') }), code('ZOMG_NO_BUILD_CONTEXT'));
    await assert.rejects(t.engine.buildBase('Bad_Name', { context: failing }), code('ZOMG_INVALID_NAME'));
    await assert.rejects(t.engine.buildBase('webimg', { context: failing, builder: 'buildkit' as never }), code('ZOMG_INVALID_BUILDER'));

    // No engine at all: the error names each one tried.
    const path = process.env.PATH;
    process.env.PATH = mkdtempSync(join(tmpdir(), 'zomg-empty-path-'));
    try {
      await assert.rejects(t.engine.buildBase('webimg', { context: failing }), (err: unknown) => {
        code('ZOMG_NO_BUILDER')(err);
        assert.match((err as Error).message, /docker: not installed; podman: not installed; nerdctl: not installed/);
        return true;
      });
    } finally {
      rmSync(process.env.PATH, { recursive: true, force: true });
      process.env.PATH = path;
    }
    // An engine that is installed but fails (here: docker without its daemon).
    if (spawnSync('docker', ['version', '--format', '{{.Server.Version}}'], { stdio: 'ignore', timeout: 10_000 }).status !== 0) {
      await assert.rejects(t.engine.buildBase('webimg', { context: failing, builder: 'docker' }), (err: unknown) => {
        code('ZOMG_NO_BUILDER')(err);
        assert.match((err as Error).message, /docker: (not installed|not answering)/);
        return true;
      });
    }

    assert.equal(JSON.stringify(await t.engine.inspectBase('webimg')), before, 'nothing recorded');
    assert.deepEqual(store.leftovers(), { images: '', containers: '' });
    assert.deepEqual(stagingEntries(t), []);
    assert.deepEqual(readdirSync(join(t.stateDir, 'builds')), [], 'no build markers left');
  });

  it('removes at the next start what a build killed mid-way left in the store', async () => {
    store.podman('import', '-q', busyboxRootfsTar(), 'localhost/ghost:latest');
    const dead = spawnSync('true').pid;
    writeFileSync(join(t.stateDir, 'builds', `${dead}-0000.json`), JSON.stringify({ pid: dead, builder: 'podman', tag: 'ghost:latest', since_ms: Date.now() }));
    const report = await t.engine.reconcile();
    assert.equal(report?.removedBuilds, 1);
    assert.deepEqual(store.leftovers(), { images: '', containers: '' });
    assert.deepEqual(readdirSync(join(t.stateDir, 'builds')), []);
  });
});

describe('engine: base save', { skip: !isRoot() && 'needs root for btrfs' }, () => {
  let t: TestEngine;

  before(async () => {
    t = await makeTestEngine();
    await t.engine.importBase('bb', busyboxRootfsTar());
  });
  after(async () => t?.cleanup());

  it("saves a box's root as a read-only version with the box's base as parent, then newer versions", async () => {
    const box = await t.engine.createBox(ref('dev'), { base: 'bb' });
    await run(t.engine, 'dev', { command: ['echo saved-content > /etc/saved; mkdir -p /opt/app'], shell: true });
    // A nested subvolume made inside the box (as docker in a box does) is saved too.
    execFileSync('btrfs', ['subvolume', 'create', join(t.pool.mnt, 'roots', box.id, 'opt', 'app', 'nested')], { stdio: 'ignore' });
    writeFileSync(join(t.pool.mnt, 'roots', box.id, 'opt', 'app', 'nested', 'file'), 'nested\n');

    const v = await t.engine.saveBase('devbase', ref('dev'));
    assert.equal(v.name, 'devbase');
    assert.equal(v.provenance.kind, 'save');
    assert.equal(v.provenance.build.parent_version, 'bb');
    assert.equal(v.provenance.build.parent_alias, 'bb');
    assert.equal(v.provenance.build.script_sha256, null);
    const root = join(t.pool.mnt, 'bases', 'devbase');
    assert.throws(() => writeFileSync(join(root, 'x'), 'x'), /EROFS|read-only/i);
    assert.throws(() => writeFileSync(join(root, 'opt', 'app', 'nested', 'x'), 'x'), /EROFS|read-only/i);

    // The box goes on independently; boxes from the saved base see what it had.
    await run(t.engine, 'dev', { command: ['echo later > /etc/saved'], shell: true });
    await t.engine.createBox(ref('copy'), { base: 'devbase' });
    assert.equal(await run(t.engine, 'copy', { command: ['cat', '/etc/saved', '/opt/app/nested/file'] }), 'saved-content\nnested\n');

    const v2 = await t.engine.saveBase('devbase', ref('copy'));
    assert.match(v2.name, /^devbase-v\d{14}$/);
    assert.equal(v2.provenance.build.parent_version, 'devbase');
    assert.equal((await t.engine.inspectBase('devbase')).latest_version, v2.name);
  });

  it('keeps the parent when its version was deleted, and refuses a missing box or a bad name', async () => {
    await t.engine.importBase('gone', busyboxRootfsTar());
    await t.engine.createBox(ref('orphan'), { base: 'gone', start: false });
    await t.engine.deleteBaseAlias('gone');
    await t.engine.deleteBaseVersion('gone');
    const v = await t.engine.saveBase('fromorphan', ref('orphan'));
    assert.equal(v.provenance.build.parent_version, 'gone');

    const bases = JSON.stringify(await t.engine.listBases());
    await assert.rejects(t.engine.saveBase('nobox', ref('missing')), code('ZOMG_BOX_NOT_FOUND'));
    await assert.rejects(t.engine.saveBase('Not_Valid', ref('dev')), code('ZOMG_INVALID_NAME'));
    assert.equal(JSON.stringify(await t.engine.listBases()), bases);
    assert.ok(!existsSync(join(t.pool.mnt, 'bases', 'nobox')));
  });
});
