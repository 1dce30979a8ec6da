/**
 * The pool lifecycle against real mounts: a loop image created on first use in a state
 * directory on ext4, reused, closed (loop device gone), mounted again after a "reboot",
 * concurrent first use, and existing btrfs pools.
 */
import * as assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statfsSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { InvalidArgumentError, UnsupportedError } from '../../src/core/errors.js';
import { BTRFS_SUPER_MAGIC } from '../../src/storage/btrfs.js';
import { BtrfsDriver } from '../../src/storage/btrfs.js';
import { LAYERS, Pool } from '../../src/storage/layout.js';
import { closePool, openPool } from '../../src/storage/pool.js';
import { isRoot, makeTestPool } from '../helpers/pool.js';
import type { TestPool } from '../helpers/pool.js';

const skip = isRoot() ? false : 'needs root: mounts loop images';
const IMAGE_BYTES = 256 * 1024 * 1024;

/** Mount entries whose mount point is exactly `point`. */
function mountsAt(point: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l.split(' ')[4] === point);
}

function loopsOf(image: string): string[] {
  return execFileSync('losetup', ['-a'], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l.includes(`(${image})`));
}

describe('openPool / closePool with a loop image', { skip }, () => {
  const dirs: string[] = [];
  const newStateDir = (): string => {
    const d = mkdtempSync(join(tmpdir(), 'zomg-pool-'));
    dirs.push(d);
    return d;
  };
  afterEach(async () => {
    for (const d of dirs.splice(0)) {
      try {
        await closePool(d);
      } finally {
        rmSync(d, { recursive: true, force: true });
      }
    }
  });

  it('creates and mounts the image on first use, reuses it, closes it, mounts it again', async () => {
    const stateDir = newStateDir();
    assert.notEqual(statfsSync(stateDir).type, BTRFS_SUPER_MAGIC, 'precondition: the temp dir is not on btrfs');
    const pool = await openPool({ stateDir, imageSizeBytes: IMAGE_BYTES });
    const image = join(stateDir, 'pool.img');
    assert.deepEqual(pool, { root: join(stateDir, 'pool'), mounted: 'loop' });
    assert.equal(statSync(image).size, IMAGE_BYTES);
    assert.ok(statSync(image).blocks * 512 < IMAGE_BYTES / 4, 'the image is sparse');
    assert.equal(mountsAt(pool.root).length, 1);
    assert.match(mountsAt(pool.root)[0] ?? '', / - btrfs /);
    for (const layer of LAYERS) assert.ok(statSync(join(pool.root, layer)).isDirectory(), layer);
    assert.equal(statSync(join(pool.root, 'staging')).mode & 0o777, 0o700);
    writeFileSync(join(pool.root, 'roots', 'marker'), 'kept');

    assert.deepEqual(await openPool({ stateDir, imageSizeBytes: IMAGE_BYTES }), pool);
    assert.equal(mountsAt(pool.root).length, 1, 'a second open does not mount again');
    const options = (): string[] => (mountsAt(pool.root)[0] ?? '').split(' ')[5]?.split(',') ?? [];
    for (const o of ['noatime', 'nosuid', 'nodev']) assert.ok(options().includes(o), `mounted ${o}: ${options().join(',')}`);
    // Mounted as an older zomg (or a person) might have: opening it puts the options back.
    execFileSync('mount', ['-o', 'remount,atime,relatime,suid,dev', pool.root]);
    assert.ok(!options().includes('noatime'), options().join(','));
    assert.deepEqual(await openPool({ stateDir, imageSizeBytes: IMAGE_BYTES }), pool);
    for (const o of ['noatime', 'nosuid', 'nodev']) assert.ok(options().includes(o), `remounted ${o}: ${options().join(',')}`);

    assert.equal((await closePool(stateDir)).status, 'unmounted');
    assert.equal(mountsAt(pool.root).length, 0);
    assert.deepEqual(loopsOf(image), [], 'the loop device is detached');
    const again = await closePool(stateDir);
    assert.equal(again.status, 'not-mounted');
    assert.match(again.message, /not mounted/);

    // After a reboot the image exists but is not mounted: open mounts it again, data intact.
    assert.deepEqual(await openPool({ stateDir }), pool);
    assert.equal(mountsAt(pool.root).length, 1);
    assert.equal(readFileSync(join(pool.root, 'roots', 'marker'), 'utf8'), 'kept');
    assert.equal(statSync(image).size, IMAGE_BYTES, 'the existing image is not resized or reformatted');
  });

  it('mounts once when two opens race in one process', async () => {
    const stateDir = newStateDir();
    const [a, b] = await Promise.all([
      openPool({ stateDir, imageSizeBytes: IMAGE_BYTES }),
      openPool({ stateDir, imageSizeBytes: IMAGE_BYTES }),
    ]);
    assert.deepEqual(a, b);
    assert.equal(mountsAt(join(stateDir, 'pool')).length, 1);
    assert.equal(loopsOf(join(stateDir, 'pool.img')).length, 1);
  });

  it('mounts and formats once when two processes open a fresh state directory together', async () => {
    const stateDir = newStateDir();
    const moduleUrl = new URL('../../src/storage/pool.js', import.meta.url).href;
    const script = `import { openPool } from ${JSON.stringify(moduleUrl)};
      const p = await openPool({ stateDir: ${JSON.stringify(stateDir)}, imageSizeBytes: ${IMAGE_BYTES} });
      process.stdout.write(JSON.stringify(p));`;
    const runOne = () => promisify(execFile)(process.execPath, ['--input-type=module', '-e', script]);
    const results = await Promise.all([runOne(), runOne()]);
    for (const r of results) assert.deepEqual(JSON.parse(r.stdout), { root: join(stateDir, 'pool'), mounted: 'loop' });
    assert.equal(mountsAt(join(stateDir, 'pool')).length, 1);
    assert.equal(loopsOf(join(stateDir, 'pool.img')).length, 1);
    assert.equal(existsSync(join(stateDir, 'pool.img.tmp')), false);
  });

  it('closes a state directory that was never opened', async () => {
    assert.equal((await closePool(newStateDir())).status, 'not-mounted');
    assert.equal((await closePool(join(tmpdir(), 'zomg-no-such-dir'))).status, 'not-mounted');
  });

  it('rejects a configured pool that is missing or not on btrfs', async () => {
    const stateDir = newStateDir();
    await assert.rejects(openPool({ stateDir, poolPath: stateDir }), (err: unknown) => {
      assert.ok(err instanceof UnsupportedError);
      assert.equal(err.code, 'ZOMG_POOL_NOT_BTRFS');
      return true;
    });
    await assert.rejects(openPool({ stateDir, poolPath: join(stateDir, 'missing') }), InvalidArgumentError);
  });
});

describe('openPool on an existing btrfs', { skip }, () => {
  let btrfs: TestPool;
  before(() => {
    btrfs = makeTestPool(256);
  });
  after(() => btrfs?.cleanup());

  it('uses a configured btrfs directory as is', async () => {
    const poolPath = join(btrfs.mnt, 'srv', 'zomg');
    mkdirSync(poolPath, { recursive: true });
    const stateDir = mkdtempSync(join(tmpdir(), 'zomg-pool-'));
    try {
      assert.deepEqual(await openPool({ stateDir, poolPath }), { root: poolPath, mounted: 'existing' });
      for (const layer of LAYERS) assert.ok(statSync(join(poolPath, layer)).isDirectory(), layer);
      assert.equal(existsSync(join(stateDir, 'pool.img')), false);
    } finally {
      await closePool(stateDir);
      rmSync(stateDir, { recursive: true, force: true });
    }
  });

  it('uses <stateDir>/pool as a plain directory when the state directory is on btrfs', async () => {
    const stateDir = join(btrfs.mnt, 'state');
    const pool = await openPool({ stateDir });
    assert.deepEqual(pool, { root: join(stateDir, 'pool'), mounted: 'existing' });
    assert.equal(existsSync(join(stateDir, 'pool.img')), false);
    assert.equal(mountsAt(pool.root).length, 0);
    assert.equal((await closePool(stateDir)).status, 'not-mounted');
  });

  it('warns about a configured pool mounted without nosuid,nodev, and keeps its layers 0700', async () => {
    const poolPath = join(btrfs.mnt, 'srv', 'unsafe');
    mkdirSync(poolPath, { recursive: true });
    const stateDir = mkdtempSync(join(tmpdir(), 'zomg-pool-'));
    execFileSync('mount', ['-o', 'remount,suid,dev', btrfs.mnt]);
    try {
      const pool = await openPool({ stateDir, poolPath });
      assert.match(pool.warnings?.[0] ?? '', /mounted without nosuid,nodev/);
      for (const layer of LAYERS) assert.equal(statSync(join(poolPath, layer)).mode & 0o777, 0o700, layer);
    } finally {
      execFileSync('mount', ['-o', 'remount,nosuid,nodev', btrfs.mnt]);
      rmSync(stateDir, { recursive: true, force: true });
    }
  });
});

describe('Pool layout', () => {
  it('names every kind of subvolume by a typed id, and refuses ids that would leave their layer', () => {
    const pool = new Pool('/p', new BtrfsDriver());
    assert.equal(pool.hostPath({ kind: 'root', box: 'abc' }), '/p/roots/abc');
    assert.equal(pool.hostPath({ kind: 'snapshot', box: 'abc', name: 'v0' }), '/p/checkpoints/abc/v0');
    assert.equal(pool.hostPath({ kind: 'base', version: 'b-v1' }), '/p/bases/b-v1');
    assert.equal(pool.hostPath({ kind: 'volume', volume: 'x' }), '/p/volumes/x');
    assert.equal(pool.hostPath({ kind: 'staging', name: '1-a-b' }), '/p/staging/1-a-b');
    assert.throws(() => pool.hostPath({ kind: 'root', box: '..' }));
    assert.throws(() => pool.hostPath({ kind: 'snapshot', box: 'abc', name: 'a/b' }));
    assert.throws(() => pool.hostPath({ kind: 'base', version: 'x\0y' }));
  });
});
