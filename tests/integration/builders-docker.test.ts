/**
 * `base build` through real docker: a private dockerd started for these tests (never the
 * host's), reached through DOCKER_HOST. Offline, so images come FROM scratch with a busybox
 * rootfs ADDed, or from an image imported or loaded locally. podman builds the same
 * Dockerfiles in zomg's store on the test pool, for comparison.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ZomgError } from '../../src/core/errors.js';
import type { BoxName, ProjectName } from '../../src/core/names.js';
import { podmanStoreFor } from '../../src/engine/builds.js';
import { BtrfsDriver } from '../../src/storage/btrfs.js';
import { detectBuilder } from '../../src/storage/builders.js';
import { type TestDocker, hasDockerd, startDockerd } from '../helpers/docker.js';
import { type TestEngine, makeTestEngine } from '../helpers/engine.js';
import { busyboxRootfsTar } from '../helpers/fixtures.js';
import { hasPodman, type TestStore, testStore } from '../helpers/podman.js';
import { isRoot } from '../helpers/pool.js';

const skip = !isRoot() ? 'needs root (btrfs loop mounts, dockerd)' : !hasDockerd() ? 'docker is not installed (apt-get install docker.io)' : !hasPodman() ? 'podman is not installed' : false;

const code = (c: string) => (err: unknown) => {
  assert.equal((err as ZomgError).code, c, (err as Error).message);
  return true;
};

/** Every entry's type, mode, owner, size, link target and content hash, by path. */
function treeListing(root: string): string[] {
  const out: string[] = [`. ${lstatSync(root).mode.toString(8)}`];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name);
      const st = lstatSync(p);
      let what = '';
      if (st.isSymbolicLink()) what = `-> ${readlinkSync(p)}`;
      else if (st.isFile()) what = createHash('sha256').update(readFileSync(p)).digest('hex');
      out.push(`${relative(root, p)} ${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.isDirectory() ? 0 : st.size} ${what}`);
      if (st.isDirectory()) walk(p);
    }
  };
  walk(root);
  return out;
}

/** The busybox rootfs as an image whose config says arm64, in `docker save` layout, for `docker load`. */
function arm64ImageArchive(d: TestDocker, work: string): string {
  d.docker('import', busyboxRootfsTar(), 'zomg-test-amd64-src:1');
  const dir = join(work, 'arm64-image');
  mkdirSync(dir);
  execFileSync('tar', ['-x', '-C', dir], { input: execFileSync('docker', ['save', 'zomg-test-amd64-src:1'], { env: { ...process.env, DOCKER_HOST: d.host }, maxBuffer: 1 << 30 }) });
  d.docker('rmi', 'zomg-test-amd64-src:1');
  const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Array<{ Config: string; RepoTags: string[] }>;
  const entry = manifest[0];
  assert.ok(entry);
  const config = JSON.parse(readFileSync(join(dir, entry.Config), 'utf8')) as { architecture: string };
  config.architecture = 'arm64';
  const body = Buffer.from(JSON.stringify(config));
  rmSync(join(dir, entry.Config));
  rmSync(join(dir, 'repositories'), { force: true });
  entry.Config = `${createHash('sha256').update(body).digest('hex')}.json`;
  entry.RepoTags = ['zomg-test-arm64:1'];
  writeFileSync(join(dir, entry.Config), body);
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify(manifest));
  const archive = join(work, 'arm64-image.tar');
  execFileSync('tar', ['-C', dir, '-cf', archive, '.']);
  return archive;
}

describe('builds with real docker', { skip, concurrency: false }, () => {
  let d: TestDocker;
  let t: TestEngine;
  let store: TestStore;
  let work: string;
  let savedHost: string | undefined;
  const driver = new BtrfsDriver();
  const context = (name: string, dockerfile: string): string => {
    const dir = join(work, name);
    mkdirSync(dir);
    execFileSync('cp', [busyboxRootfsTar(), join(dir, 'rootfs.tar')]);
    writeFileSync(join(dir, 'Dockerfile'), dockerfile);
    return dir;
  };
  const noLeftovers = (): void => assert.deepEqual(d.leftovers(), { images: '', containers: '' });

  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'zomg-docker-test-'));
    d = await startDockerd();
    savedHost = process.env.DOCKER_HOST;
    process.env.DOCKER_HOST = d.host;
    t = await makeTestEngine();
    store = testStore(t.pool.mnt);
  });
  after(async () => {
    if (savedHost === undefined) delete process.env.DOCKER_HOST;
    else process.env.DOCKER_HOST = savedHost;
    try {
      store?.wipe();
      await t?.cleanup();
    } finally {
      await d?.stop();
      if (work) rmSync(work, { recursive: true, force: true });
    }
  });

  it('picks docker first when its daemon answers, podman when it does not', async () => {
    const server = d.docker('version', '--format', '{{.Server.Version}}').trim();
    const picked = await detectBuilder(undefined, podmanStoreFor(t.pool.mnt));
    assert.equal(picked.name, 'docker');
    assert.equal(picked.version, server);
    process.env.DOCKER_HOST = `unix://${join(work, 'no-daemon.sock')}`;
    try {
      assert.equal((await detectBuilder(undefined, podmanStoreFor(t.pool.mnt))).name, 'podman');
      await assert.rejects(detectBuilder('docker'), (err: unknown) => code('ZOMG_NO_BUILDER')(err) && /docker: not answering/.test((err as Error).message));
    } finally {
      process.env.DOCKER_HOST = d.host;
    }
  });

  it('hands over exactly the tree podman hands over, whiteouts and /etc/hosts included', async () => {
    // The second RUN deletes files and replaces a directory (an opaque directory in the
    // layer). /etc/hosts comes from the rootfs: docker's container init layer would shadow it
    // with an empty file.
    const dockerfile = [
      'FROM scratch',
      'ADD rootfs.tar /',
      'RUN mkdir -p /var/x/y && touch /var/x/y/z /var/x/keep && echo one > /built',
      'RUN rm /etc/profile && rm -rf /var/x/y && mkdir /var/x/y && echo new > /var/x/y/new',
      'ENV FOO=bar',
      'ENTRYPOINT ["/bin/sh", "-c"]',
      'CMD ["echo hi"]',
      '',
    ].join('\n');
    const ctx = context('same-tree', dockerfile);
    const roots: Record<string, string> = {};
    try {
      for (const name of ['docker', 'podman'] as const) {
        const builder = await detectBuilder(name, podmanStoreFor(t.pool.mnt));
        const image = await builder.build({ name: 'zomg-test-same', dockerfile: join(ctx, 'Dockerfile'), context: ctx });
        try {
          assert.equal(image.architecture, 'amd64');
          assert.equal(image.tag, 'zomg-test-same:latest');
          assert.deepEqual(image.config.cmd, ['/bin/sh', '-c', 'echo hi']);
          assert.ok(image.config.env.includes('FOO=bar'));
          const dest = join(t.pool.mnt, 'staging', `tree-${name}`);
          const handover = await image.exportTo(dest, driver, { method: 'export' });
          assert.equal(handover.method, 'export');
          roots[name] = dest;
        } finally {
          await image.remove();
        }
      }
      const [viaDocker, viaPodman] = [roots.docker as string, roots.podman as string];
      assert.equal(readFileSync(join(viaDocker, 'etc/hosts'), 'utf8'), execFileSync('tar', ['-xOf', busyboxRootfsTar(), './etc/hosts'], { encoding: 'utf8' }));
      assert.equal(readFileSync(join(viaDocker, 'var/x/y/new'), 'utf8'), 'new\n');
      assert.deepEqual(readdirSync(join(viaDocker, 'var/x/y')), ['new'], 'the opaque directory hides what was below');
      assert.throws(() => lstatSync(join(viaDocker, 'etc/profile')), /ENOENT/, 'the whiteout deletes the file');
      assert.deepEqual(treeListing(viaDocker), treeListing(viaPodman));
      const rsync = execFileSync('rsync', ['-rlpgoDXcn', '--delete', '-i', `${viaDocker}/`, `${viaPodman}/`], { encoding: 'utf8' });
      assert.equal(rsync, '', 'rsync finds no difference');
    } finally {
      for (const root of Object.values(roots)) await driver.deleteSubvolume(root);
    }
    noLeftovers();
    assert.deepEqual(store.leftovers(), { images: '', containers: '' });
  });

  it('gives `<name>:latest` back to the image it named before, and builds FROM a locally imported image', async () => {
    d.docker('import', busyboxRootfsTar(), 'zomg-test-owned:latest');
    const before = d.docker('image', 'inspect', '--format', '{{.Id}}', 'zomg-test-owned:latest').trim();
    const ctx = context('owned', 'FROM zomg-test-owned:latest\nRUN echo mine > /mine\nUSER nobody\n');
    const image = await (await detectBuilder('docker')).build({ name: 'zomg-test-owned', dockerfile: join(ctx, 'Dockerfile'), context: ctx });
    assert.notEqual(`sha256:${image.id}`, before);
    assert.equal(d.docker('image', 'inspect', '--format', '{{.Id}}', 'zomg-test-owned:latest').trim(), `sha256:${image.id}`, 'the build took the tag');
    assert.equal(image.config.user, 'nobody');
    const dest = join(t.pool.mnt, 'staging', 'owned');
    try {
      await image.exportTo(dest, driver);
      assert.equal(readFileSync(join(dest, 'mine'), 'utf8'), 'mine\n');
      assert.ok(lstatSync(join(dest, 'bin/busybox')).isFile());
    } finally {
      await image.remove();
      await driver.deleteSubvolume(dest);
    }
    assert.equal(d.docker('image', 'inspect', '--format', '{{.Id}}', 'zomg-test-owned:latest').trim(), before, 'the tag is back on the image it named');
    d.docker('rmi', 'zomg-test-owned:latest');
    noLeftovers();
  });

  it('leaves no image or container behind when a build fails, is aborted or makes a non-amd64 image', async () => {
    const failing = context('failing', 'FROM scratch\nADD rootfs.tar /\nRUN echo step-one > /one\nRUN echo boom-marker-42 && false\n');
    const builder = await detectBuilder('docker');
    await assert.rejects(
      builder.build({ name: 'zomg-test-failing', dockerfile: join(failing, 'Dockerfile'), context: failing }),
      (err: unknown) => code('ZOMG_BUILD_FAILED')(err) && /boom-marker-42/.test((err as Error).message),
    );
    noLeftovers();

    // Aborted during a RUN: the daemon stops the step; its container and the images of the
    // steps before it go too.
    const slow = context('slow', 'FROM scratch\nADD rootfs.tar /\nRUN echo one > /one\nRUN sleep 60\n');
    const abort = new AbortController();
    const started = Date.now();
    await assert.rejects(
      builder.build({
        name: 'zomg-test-slow',
        dockerfile: join(slow, 'Dockerfile'),
        context: slow,
        signal: abort.signal,
        onLine: (l) => {
          if (l.includes('RUN sleep 60')) setTimeout(() => abort.abort(), 500);
        },
      }),
      { name: 'AbortError' },
    );
    assert.ok(Date.now() - started < 30_000, 'the abort did not wait for the RUN step');
    noLeftovers();

    d.docker('load', '-q', '-i', arm64ImageArchive(d, work));
    const arm = context('arm', 'FROM zomg-test-arm64:1\nRUN echo x > /x\n');
    await assert.rejects(builder.build({ name: 'zomg-test-arm', dockerfile: join(arm, 'Dockerfile'), context: arm }), code('ZOMG_WRONG_ARCH'));
    assert.equal(d.docker('images', '-q').trim().split('\n').length, 1, 'only the loaded arm64 image is left');
    d.docker('rmi', 'zomg-test-arm64:1');
    noLeftovers();
  });

  it('runs `base build` end to end: docker is picked, the base boots, nothing is left in docker', async () => {
    const dockerfile = 'FROM scratch\nADD rootfs.tar /\nRUN echo built-by-docker > /built\nWORKDIR /srv\n';
    const v = await t.engine.buildBase('dockimg', { context: context('engine', dockerfile) });
    assert.equal(v.provenance.kind, 'build');
    assert.equal(v.provenance.build.builder, 'docker');
    assert.equal(v.provenance.build.script_sha256, createHash('sha256').update(dockerfile).digest('hex'));
    assert.equal(v.config?.workdir, '/srv');
    const root = join(t.pool.mnt, 'bases', v.name);
    assert.equal(readFileSync(join(root, 'built'), 'utf8'), 'built-by-docker\n');
    assert.equal(readFileSync(join(root, 'etc/hosts'), 'utf8'), execFileSync('tar', ['-xOf', busyboxRootfsTar(), './etc/hosts'], { encoding: 'utf8' }));
    for (const artefact of ['.dockerenv', 'dev/console', 'etc/mtab']) assert.throws(() => lstatSync(join(root, artefact)), /ENOENT/, artefact);
    const ref = { project: 'default' as ProjectName, name: 'from-docker' as BoxName };
    await t.engine.createBox(ref, { base: 'dockimg' });
    let out = '';
    const { Writable } = await import('node:stream');
    const sink = new Writable({ write: (c: Buffer, _e, cb) => ((out += c.toString()), cb()) });
    const res = await t.engine.exec(ref, { command: ['sh', '-c', 'cat /built; pwd'] }, { stdout: sink, stderr: sink });
    assert.equal(res.exit_code, 0, out);
    assert.equal(out, 'built-by-docker\n/srv\n');
    await t.engine.deleteBox(ref);
    noLeftovers();
    assert.deepEqual(readdirSync(join(t.pool.mnt, 'staging')).filter((n) => n !== 'podman'), []);
  });
});
