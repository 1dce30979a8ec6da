/**
 * The btrfs driver against a real btrfs on a loop image: snapshots with and without nested
 * subvolumes, read-only flags, deletion, listing, send streams and a full pool.
 */
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, linkSync, mkdirSync, openSync, readFileSync, symlinkSync, writeFileSync, writeSync, fsyncSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { PoolFullError, ToolError } from '../../src/core/errors.js';
import { BtrfsDriver } from '../../src/storage/btrfs.js';
import { isErrno } from '../../src/system/fs.js';
import { isRoot, makeTestPool } from '../helpers/pool.js';
import type { TestPool } from '../helpers/pool.js';

const skip = isRoot() ? false : 'needs root: mounts a loop-image btrfs';
const driver = new BtrfsDriver();

/** Every subvolume path on the filesystem, as `btrfs subvolume list` prints them. */
function subvolumes(mnt: string): string[] {
  return execFileSync('btrfs', ['subvolume', 'list', mnt], { encoding: 'utf8' })
    .split('\n')
    .map((l) => /path (.*)$/.exec(l)?.[1])
    .filter((p): p is string => p !== undefined);
}

function assertReadOnlyFs(path: string): void {
  assert.throws(() => writeFileSync(join(path, 'probe'), 'x'), (err: unknown) => isErrno(err, 'EROFS'));
}

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** src/{file, d/n1 (subvol)/{x, dd/n2 (subvol)/y}} */
async function treeWithNested(dir: string): Promise<void> {
  await driver.createSubvolume(dir);
  writeFileSync(join(dir, 'file'), 'top');
  mkdirSync(join(dir, 'd'));
  await driver.createSubvolume(join(dir, 'd/n1'));
  writeFileSync(join(dir, 'd/n1/x'), 'one');
  mkdirSync(join(dir, 'd/n1/dd'));
  await driver.createSubvolume(join(dir, 'd/n1/dd/n2'));
  writeFileSync(join(dir, 'd/n1/dd/n2/y'), 'two');
}

describe('BtrfsDriver on a real btrfs', { skip }, () => {
  let pool: TestPool;
  before(() => {
    pool = makeTestPool();
  });
  after(() => pool?.cleanup());

  it('creates, snapshots (rw and ro) and deletes subvolumes', async () => {
    const a = join(pool.mnt, 'a');
    await driver.createSubvolume(a);
    writeFileSync(join(a, 'f'), 'hello');
    assert.equal(await driver.isSubvolume(a), true);
    assert.equal(await driver.isReadOnly(a), false);
    mkdirSync(join(a, 'plain'));
    assert.equal(await driver.isSubvolume(join(a, 'plain')), false);
    assert.equal(await driver.isSubvolume(join(a, 'f')), false);
    assert.equal(await driver.isSubvolume(join(a, 'missing')), false);

    await driver.snapshot(a, join(pool.mnt, 'rw'));
    writeFileSync(join(pool.mnt, 'rw/f'), 'changed');
    assert.equal(readFileSync(join(a, 'f'), 'utf8'), 'hello', 'a snapshot is independent of its source');

    await driver.snapshot(a, join(pool.mnt, 'ro'), { readOnly: true });
    assert.equal(await driver.isReadOnly(join(pool.mnt, 'ro')), true);
    assert.equal(readFileSync(join(pool.mnt, 'ro/f'), 'utf8'), 'hello');
    assertReadOnlyFs(join(pool.mnt, 'ro'));

    await driver.setReadOnly(join(pool.mnt, 'ro'), false);
    writeFileSync(join(pool.mnt, 'ro/g'), 'writable again');
    await driver.setReadOnly(join(pool.mnt, 'ro'), true);

    for (const name of ['a', 'rw', 'ro']) await driver.deleteSubvolume(join(pool.mnt, name));
    assert.deepEqual(subvolumes(pool.mnt), []);
    await driver.deleteSubvolume(join(pool.mnt, 'a')); // missing is not an error
  });

  it('snapshots nested subvolumes (two levels) with their content, read-only throughout', async () => {
    const src = join(pool.mnt, 'src');
    await treeWithNested(src);
    assert.deepEqual(await driver.listNested(src), [join(src, 'd/n1'), join(src, 'd/n1/dd/n2')]);

    const ro = join(pool.mnt, 'snap-ro');
    assert.deepEqual(await driver.snapshot(src, ro, { readOnly: true }), { nested: 2 });
    assert.equal(readFileSync(join(ro, 'file'), 'utf8'), 'top');
    assert.equal(readFileSync(join(ro, 'd/n1/x'), 'utf8'), 'one');
    assert.equal(readFileSync(join(ro, 'd/n1/dd/n2/y'), 'utf8'), 'two');
    for (const p of [ro, join(ro, 'd/n1'), join(ro, 'd/n1/dd/n2')]) {
      assert.equal(await driver.isSubvolume(p), true, p);
      assert.equal(await driver.isReadOnly(p), true, p);
      assertReadOnlyFs(p);
    }

    // Back from the read-only snapshot (a restore): every level writable again.
    const rw = join(pool.mnt, 'restored');
    await driver.snapshot(ro, rw);
    assert.equal(readFileSync(join(rw, 'd/n1/dd/n2/y'), 'utf8'), 'two');
    for (const p of [rw, join(rw, 'd/n1'), join(rw, 'd/n1/dd/n2')]) {
      assert.equal(await driver.isReadOnly(p), false, p);
      writeFileSync(join(p, 'w'), 'ok');
    }
    assert.equal(readFileSync(join(src, 'd/n1/dd/n2/y'), 'utf8'), 'two');
    assert.throws(() => readFileSync(join(src, 'd/n1/dd/n2/w')), (err: unknown) => isErrno(err, 'ENOENT'));

    // Read-only from a read-only source with nested subvolumes.
    const ro2 = join(pool.mnt, 'snap-ro2');
    await driver.snapshot(ro, ro2, { readOnly: true });
    assert.equal(readFileSync(join(ro2, 'd/n1/dd/n2/y'), 'utf8'), 'two');
    assert.equal(await driver.isReadOnly(join(ro2, 'd/n1/dd/n2')), true);
  });

  it('deletes trees whose nested subvolumes sit in read-only parents, leaving nothing', async () => {
    // snap-ro and snap-ro2 are read-only at every level: unlinking a nested subvolume from
    // a read-only parent is EROFS on btrfs, so the driver must clear the parents' flag.
    for (const name of ['snap-ro', 'snap-ro2', 'restored', 'src']) await driver.deleteSubvolume(join(pool.mnt, name));
    assert.deepEqual(subvolumes(pool.mnt), []);
  });

  it('lists nested subvolumes when the pool is a directory inside the mount', async () => {
    const poolDir = join(pool.mnt, 'srv/zomg/pool');
    mkdirSync(poolDir, { recursive: true });
    const box = join(poolDir, 'roots/box');
    mkdirSync(join(poolDir, 'roots'));
    await treeWithNested(box);
    await driver.createSubvolume(join(poolDir, 'roots/other')); // a sibling, not nested in box
    assert.deepEqual(await driver.listNested(box), [join(box, 'd/n1'), join(box, 'd/n1/dd/n2')]);
    assert.deepEqual(await driver.listNested(join(box, 'd/n1')), [join(box, 'd/n1/dd/n2')]);
    assert.deepEqual(await driver.listNested(join(box, 'd/n1/dd/n2')), []);
    assert.deepEqual(await driver.listNested(join(poolDir, 'roots')), [
      box,
      join(box, 'd/n1'),
      join(box, 'd/n1/dd/n2'),
      join(poolDir, 'roots/other'),
    ]);
    await driver.deleteSubvolume(box);
    await driver.deleteSubvolume(join(poolDir, 'roots/other'));
    assert.deepEqual(subvolumes(pool.mnt), []);
  });

  it('lists nested subvolumes when a non-top subvolume is what is mounted', async () => {
    // The same filesystem mounted a second time with subvol=, so `btrfs subvolume list`
    // paths (relative to the top level) differ from the host paths below the mount.
    await driver.createSubvolume(join(pool.mnt, 'top'));
    const second = join(pool.dir, 'second');
    mkdirSync(second);
    execFileSync('mount', ['-o', 'loop,subvol=top', pool.image, second]);
    try {
      mkdirSync(join(second, 'p'));
      const box = join(second, 'p/box');
      await treeWithNested(box);
      assert.deepEqual(await driver.listNested(box), [join(box, 'd/n1'), join(box, 'd/n1/dd/n2')]);
      await driver.snapshot(box, join(second, 'p/copy'), { readOnly: true });
      assert.equal(readFileSync(join(second, 'p/copy/d/n1/dd/n2/y'), 'utf8'), 'two');
      await driver.deleteSubvolume(join(second, 'p/copy'));
      await driver.deleteSubvolume(box);
    } finally {
      execFileSync('umount', [second]);
    }
    await driver.deleteSubvolume(join(pool.mnt, 'top'));
    assert.deepEqual(subvolumes(pool.mnt), []);
  });

  it('sizes a tree by apparent size, nested subvolumes included, hard links once', async () => {
    const s = join(pool.mnt, 'sized');
    await driver.createSubvolume(s);
    writeFileSync(join(s, 'a'), Buffer.alloc(10_000));
    linkSync(join(s, 'a'), join(s, 'a-link'));
    symlinkSync('a', join(s, 'sym')); // 1 byte
    await driver.createSubvolume(join(s, 'nested'));
    writeFileSync(join(s, 'nested/b'), 'hello'); // inline: `btrfs filesystem du` would say 0
    assert.equal(await driver.sizeBytes(s), 10_000 + 1 + 5);
    await driver.deleteSubvolume(s);
  });

  it('streams a data-less send between two read-only snapshots', async () => {
    const box = join(pool.mnt, 'sbox');
    await driver.createSubvolume(box);
    writeFileSync(join(box, 'f'), 'one');
    await driver.snapshot(box, join(pool.mnt, 's0'), { readOnly: true });
    writeFileSync(join(box, 'f'), 'two');
    writeFileSync(join(box, 'g'), 'new');
    await driver.snapshot(box, join(pool.mnt, 's1'), { readOnly: true });

    const stream = await collect(driver.sendNoData(join(pool.mnt, 's0'), join(pool.mnt, 's1')));
    assert.equal(stream.subarray(0, 13).toString('latin1'), 'btrfs-stream\0');
    assert.ok(stream.length > 17);

    const aborted = new AbortController();
    aborted.abort();
    await assert.rejects(collect(driver.sendNoData(join(pool.mnt, 's0'), join(pool.mnt, 's1'), { signal: aborted.signal })), {
      name: 'AbortError',
    });
    // Stopping early (a consumer that got what it needed) ends btrfs without an error.
    const early = driver.sendNoData(join(pool.mnt, 's0'), join(pool.mnt, 's1'));
    for await (const _chunk of early) break;
    assert.equal(early.destroyed, true);

    // A writable child cannot be sent: the failure arrives as a stream error.
    await assert.rejects(collect(driver.sendNoData(join(pool.mnt, 's0'), box)), (err: unknown) => {
      assert.ok(err instanceof ToolError);
      assert.equal(err.code, 'ZOMG_BTRFS_FAILED');
      assert.ok(!err.message.includes(pool.dir), 'no host paths in the message');
      return true;
    });
    for (const name of ['s0', 's1', 'sbox']) await driver.deleteSubvolume(join(pool.mnt, name));
  });

  it('maps other btrfs failures to ZOMG_BTRFS_FAILED without host paths', async () => {
    const x = join(pool.mnt, 'x');
    await driver.createSubvolume(x);
    await assert.rejects(driver.createSubvolume(x), (err: unknown) => {
      assert.ok(err instanceof ToolError);
      assert.equal(err.code, 'ZOMG_BTRFS_FAILED');
      assert.match(err.message, /create a subvolume: already exists/);
      assert.ok(!err.message.includes(pool.dir));
      return true;
    });
    await driver.deleteSubvolume(x);
  });
});

/** fsync that tolerates the pool being full (the data is what filled it). */
function flush(fd: number): void {
  try {
    fsyncSync(fd);
  } catch (err) {
    if (!isErrno(err, 'ENOSPC')) throw err;
  }
}

describe('BtrfsDriver on a full pool', { skip }, () => {
  let pool: TestPool;
  before(() => {
    pool = makeTestPool(120); // --mixed: data and metadata fill up together
  });
  after(() => pool?.cleanup());

  it('maps ENOSPC to PoolFullError', async () => {
    const a = join(pool.mnt, 'a');
    await driver.createSubvolume(a);
    const fd = openSync(join(a, 'fill'), 'w');
    const chunk = Buffer.alloc(1024 * 1024, 7);
    const fill = (): void => {
      for (;;) writeSync(fd, chunk);
    };
    try {
      assert.throws(fill, (err: unknown) => isErrno(err, 'ENOSPC'));
      flush(fd);
    } finally {
      closeSync(fd);
    }
    await assert.rejects(driver.snapshot(a, join(pool.mnt, 'b')), (err: unknown) => {
      assert.ok(err instanceof PoolFullError, String(err));
      assert.equal(err.code, 'ZOMG_POOL_FULL');
      return true;
    });
  });
});
