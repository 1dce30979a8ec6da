/**
 * Dockerfile builds with real podman into a real btrfs pool. Podman's storage lives in a
 * test-owned root (on the test pool, with the btrfs storage driver, so the snapshot
 * hand-over applies) and never in the host's default store. Real docker is in
 * builders-docker.test.ts.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ToolError, UnprocessableError, UnsupportedError } from '../../src/core/errors.js';
import type { ZomgError } from '../../src/core/errors.js';
import { BtrfsDriver } from '../../src/storage/btrfs.js';
import { checkArchitecture, detectBuilder, parseImageInspect } from '../../src/storage/builders.js';
import type { DetectBuilderOptions } from '../../src/storage/builders.js';
import { busyboxRootfsTar } from '../helpers/fixtures.js';
import { isRoot, makeTestPool } from '../helpers/pool.js';
import type { TestPool } from '../helpers/pool.js';

function has(command: string): boolean {
  try {
    execFileSync(command, ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const skip = !isRoot() ? 'needs root (btrfs loop mounts)' : !has('podman') ? 'podman is not installed (apt-get install podman)' : false;

/** Every entry's type, mode, owner, size, link target and content hash, by path. */
function treeListing(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name);
      const st = lstatSync(p);
      const rel = relative(root, p);
      let what = '';
      if (st.isSymbolicLink()) what = `-> ${readlinkSync(p)}`;
      else if (st.isFile()) what = createHash('sha256').update(readFileSync(p)).digest('hex');
      out.push(`${rel} ${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.isDirectory() ? 0 : st.size} ${what}`);
      if (st.isDirectory()) walk(p);
    }
  };
  out.push(`. ${lstatSync(root).mode.toString(8)}`);
  walk(root);
  return out;
}

async function rejectsWith<T extends ZomgError>(promise: Promise<unknown>, cls: abstract new (...args: never[]) => T, code: string): Promise<T> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected ${code}`);
}

describe('container builds (podman)', { skip, concurrency: false }, () => {
  let pool: TestPool;
  let work: string;
  let tarball: string;
  let opts: DetectBuilderOptions;
  const driver = new BtrfsDriver();

  const podman = (...args: string[]): string =>
    execFileSync('podman', ['--root', opts.podmanRoot ?? '', '--runroot', opts.podmanRunroot ?? '', '--storage-driver', 'btrfs', ...args], { encoding: 'utf8' });
  const leftovers = (): { images: string; containers: string } => ({
    images: podman('images', '-a', '-q').trim(),
    containers: podman('ps', '-a', '--external', '-q').trim(),
  });
  const context = (name: string, dockerfile: string): string => {
    const dir = join(work, name);
    mkdirSync(dir);
    execFileSync('cp', [tarball, join(dir, 'busybox-rootfs.tar')]);
    writeFileSync(join(dir, 'Dockerfile'), dockerfile);
    return dir;
  };

  before(() => {
    pool = makeTestPool(1024);
    work = mkdtempSync(join(tmpdir(), 'zomg-build-test-'));
    tarball = busyboxRootfsTar();
    mkdirSync(join(pool.mnt, 'staging'));
    opts = { podmanRoot: join(pool.mnt, 'staging', 'podman'), podmanRunroot: join(work, 'podman-run'), storageDriver: 'btrfs' };
  });

  after(() => {
    try {
      // Not `podman system reset`: it also deletes the host's podman networks.
      if (opts?.podmanRoot && existsSync(opts.podmanRoot)) {
        podman('rm', '-a', '-f');
        const ids = podman('ps', '-a', '--external', '-q').trim();
        if (ids) podman('rm', '-f', ...ids.split('\n'));
        podman('rmi', '-a', '-f');
        // Whatever podman left is a subvolume under its root: delete it before unmounting.
        const subvols = execFileSync('btrfs', ['subvolume', 'list', '-o', pool.mnt], { encoding: 'utf8' })
          .split('\n')
          .map((l) => /path (staging\/podman\/.*)$/.exec(l)?.[1])
          .filter((p): p is string => p !== undefined);
        for (const p of subvols.reverse()) execFileSync('btrfs', ['subvolume', 'delete', join(pool.mnt, p)], { stdio: 'ignore' });
      }
    } finally {
      pool?.cleanup();
      if (work) rmSync(work, { recursive: true, force: true });
    }
  });

  it('builds FROM scratch, reads the config and hands the root over by snapshot and by export, identically', async () => {
    const ctx = context(
      'scratch',
      'FROM scratch\nADD busybox-rootfs.tar /\nRUN echo hi > /built\nENV FOO=bar\nWORKDIR /work\nCMD ["/bin/sh"]\n',
    );
    const builder = await detectBuilder('podman', opts);
    assert.equal(builder.name, 'podman');
    const lines: string[] = [];
    const image = await builder.build({ name: 'Zomg-Test-Scratch', dockerfile: join(ctx, 'Dockerfile'), context: ctx, onLine: (l) => lines.push(l) });
    try {
      assert.ok(lines.some((l) => l.includes('RUN echo hi > /built')), 'build output is streamed line by line');
      assert.equal(image.tag, 'zomg-test-scratch:latest');
      assert.equal(image.architecture, 'amd64');
      assert.ok(image.config.env.includes('FOO=bar'));
      assert.equal(image.config.workdir, '/work');
      assert.equal(image.config.user, null);
      assert.deepEqual(image.config.cmd, ['/bin/sh']);
      assert.match(podman('images', '--format', '{{.Repository}}:{{.Tag}}'), /localhost\/zomg-test-scratch:latest/);

      const fast = join(pool.mnt, 'staging', 'fast');
      const slow = join(pool.mnt, 'staging', 'slow');
      const viaSnapshot = await image.exportTo(fast, driver);
      assert.equal(viaSnapshot.method, 'snapshot', viaSnapshot.fallbackReason);
      const viaExport = await image.exportTo(slow, driver, { method: 'export' });
      assert.equal(viaExport.method, 'export');
      for (const dest of [fast, slow]) {
        assert.equal(await driver.isSubvolume(dest), true);
        assert.equal(await driver.isReadOnly(dest), false);
        assert.equal(readFileSync(join(dest, 'built'), 'utf8'), 'hi\n');
        assert.ok(lstatSync(join(dest, 'bin/busybox')).isFile());
        assert.ok(lstatSync(join(dest, 'work')).isDirectory());
      }
      assert.deepEqual(treeListing(fast), treeListing(slow), 'the snapshot path gives the same tree as the export path');
      await assert.rejects(image.exportTo(fast, driver), /already exists/);
    } finally {
      await image.remove();
    }
    await image.remove(); // idempotent
    assert.deepEqual(leftovers(), { images: '', containers: '' });
    const gone = join(pool.mnt, 'staging', 'gone');
    await rejectsWith(image.exportTo(gone, driver), ToolError, 'ZOMG_EXPORT_FAILED');
    assert.equal(existsSync(gone), false);
    // The handed-over roots do not depend on the image.
    assert.equal(readFileSync(join(pool.mnt, 'staging', 'fast', 'built'), 'utf8'), 'hi\n');
    await driver.deleteSubvolume(join(pool.mnt, 'staging', 'fast'));
    await driver.deleteSubvolume(join(pool.mnt, 'staging', 'slow'));
  });

  it('builds FROM an image imported locally, without a registry', async () => {
    podman('import', '-q', tarball, 'localhost/zomg-test-imported:1');
    try {
      const ctx = context('imported', 'FROM localhost/zomg-test-imported:1\nRUN echo derived > /derived\nUSER nobody\n');
      const builder = await detectBuilder('podman', opts);
      const image = await builder.build({ name: 'zomg-test-derived', dockerfile: join(ctx, 'Dockerfile'), context: ctx });
      const dest = join(pool.mnt, 'staging', 'derived');
      try {
        assert.equal(image.config.user, 'nobody');
        assert.equal(image.config.cmd, null, 'an imported image has no CMD');
        assert.equal((await image.exportTo(dest, driver)).method, 'snapshot');
        assert.equal(readFileSync(join(dest, 'derived'), 'utf8'), 'derived\n');
        assert.ok(existsSync(join(dest, 'bin/busybox')));
      } finally {
        await image.remove();
        await driver.deleteSubvolume(dest);
      }
      // Only what zomg built went: the imported base stays.
      assert.match(podman('images', '--format', '{{.Repository}}:{{.Tag}}'), /^localhost\/zomg-test-imported:1$/m);
      assert.doesNotMatch(podman('images', '--format', '{{.Repository}}'), /zomg-test-derived/);
    } finally {
      podman('rmi', 'localhost/zomg-test-imported:1');
    }
    assert.deepEqual(leftovers(), { images: '', containers: '' });
  });

  it('gives `<name>:latest` back to the image it named before the build', async () => {
    podman('import', '-q', tarball, 'localhost/zomg-test-owned:latest');
    const before = podman('image', 'inspect', '--format', '{{.Id}}', 'localhost/zomg-test-owned:latest').trim();
    try {
      const ctx = context('owned', 'FROM localhost/zomg-test-owned:latest\nRUN echo mine > /mine\n');
      const builder = await detectBuilder('podman', opts);
      const image = await builder.build({ name: 'zomg-test-owned', dockerfile: join(ctx, 'Dockerfile'), context: ctx });
      assert.notEqual(image.id, before);
      await image.remove();
      assert.equal(podman('image', 'inspect', '--format', '{{.Id}}', 'localhost/zomg-test-owned:latest').trim(), before);
    } finally {
      podman('rmi', '-f', 'localhost/zomg-test-owned:latest');
    }
    assert.deepEqual(leftovers(), { images: '', containers: '' });
  });

  it('reports a failing RUN as ZOMG_BUILD_FAILED with its output, leaving nothing behind', async () => {
    const ctx = context('failing', 'FROM scratch\nADD busybox-rootfs.tar /\nRUN echo step-one > /one\nRUN echo boom-marker-42 && false\n');
    const builder = await detectBuilder('podman', opts);
    const err = await rejectsWith(builder.build({ name: 'zomg-test-failing', dockerfile: join(ctx, 'Dockerfile'), context: ctx }), UnprocessableError, 'ZOMG_BUILD_FAILED');
    assert.match(err.message, /boom-marker-42/);
    assert.deepEqual(leftovers(), { images: '', containers: '' });
  });

  it('stops a build when aborted, leaving no working container', async () => {
    const ctx = context('slow', 'FROM scratch\nADD busybox-rootfs.tar /\nRUN sleep 60\n');
    const builder = await detectBuilder('podman', opts);
    const abort = new AbortController();
    const started = Date.now();
    const build = builder.build({
      name: 'zomg-test-slow',
      dockerfile: join(ctx, 'Dockerfile'),
      context: ctx,
      signal: abort.signal,
      onLine: (l) => {
        if (l.includes('RUN sleep 60')) setTimeout(() => abort.abort(), 1000);
      },
    });
    await assert.rejects(build, { name: 'AbortError' });
    assert.ok(Date.now() - started < 30_000, 'the abort did not wait for the RUN step');
    assert.deepEqual(leftovers(), { images: '', containers: '' });
  });

  it('falls back to the export when podman stores images elsewhere, and says why', async () => {
    const other: DetectBuilderOptions = { podmanRoot: join(work, 'podman-vfs'), podmanRunroot: join(work, 'podman-vfs-run'), storageDriver: 'vfs' };
    const ctx = context('elsewhere', 'FROM scratch\nADD busybox-rootfs.tar /\nRUN echo there > /there\n');
    const image = await (await detectBuilder('podman', other)).build({ name: 'zomg-test-elsewhere', dockerfile: join(ctx, 'Dockerfile'), context: ctx });
    const dest = join(pool.mnt, 'staging', 'elsewhere');
    try {
      await rejectsWith(image.exportTo(dest, driver, { method: 'snapshot' }), UnsupportedError, 'ZOMG_SNAPSHOT_HANDOVER_UNAVAILABLE');
      assert.equal(existsSync(dest), false);
      const result = await image.exportTo(dest, driver);
      assert.equal(result.method, 'export');
      assert.match(result.fallbackReason ?? '', /vfs/);
      assert.equal(readFileSync(join(dest, 'there'), 'utf8'), 'there\n');
    } finally {
      await image.remove();
      await driver.deleteSubvolume(dest);
      const p = (...args: string[]): string =>
        execFileSync('podman', ['--root', other.podmanRoot ?? '', '--runroot', other.podmanRunroot ?? '', '--storage-driver', 'vfs', ...args], { encoding: 'utf8' });
      assert.equal(p('images', '-a', '-q').trim(), '');
      p('rmi', '-a', '-f');
    }
  });

  it('names every engine it tried when the requested one is missing', async (t) => {
    if (has('nerdctl')) return t.skip('nerdctl is installed here');
    const err = await rejectsWith(detectBuilder('nerdctl', opts), ToolError, 'ZOMG_NO_BUILDER');
    assert.match(err.message, /nerdctl: not installed/);
  });

  it('picks an engine that answers when none is requested', async () => {
    const builder = await detectBuilder(undefined, opts);
    let dockerAnswers = true;
    try {
      execFileSync('docker', ['version', '--format', '{{.Server.Version}}'], { stdio: 'ignore', timeout: 5000 });
    } catch {
      dockerAnswers = false;
    }
    assert.equal(builder.name, dockerAnswers ? 'docker' : 'podman');
  });
});

describe('image inspection', () => {
  it('reads the config and refuses another architecture', () => {
    const info = parseImageInspect(
      JSON.stringify([
        {
          Id: 'sha256:abc',
          Architecture: 'arm64',
          RepoTags: ['localhost/x:latest'],
          Config: { Env: ['A=1'], WorkingDir: '', Entrypoint: ['/init'], Cmd: ['--flag'], User: 'bob' },
        },
      ]),
    );
    assert.deepEqual(info.config, { env: ['A=1'], workdir: null, user: 'bob', cmd: ['/init', '--flag'] });
    assert.equal(info.id, 'abc');
    assert.throws(() => checkArchitecture(info.architecture), (err: unknown) => err instanceof UnprocessableError && err.code === 'ZOMG_WRONG_ARCH');
    assert.doesNotThrow(() => checkArchitecture('amd64'));
  });
});
