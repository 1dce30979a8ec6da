/**
 * zomg's in-process btrfs ioctls (native/btrfs.c through src/storage/btrfs-ioctl.ts) on a
 * real btrfs: the same results as btrfs-progs, byte for byte for send; refusals for what
 * btrfs-progs refuses; a send that is stopped early, paused, aborted or run many at once
 * ends cleanly, leaks no descriptor and leaves nothing busy.
 */
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { ToolError } from '../../src/core/errors.js';
import { BtrfsDriver } from '../../src/storage/btrfs.js';
import { btrfsIoctl, IoctlError, type BtrfsIoctl } from '../../src/storage/btrfs-ioctl.js';
import { checksumsChecked } from '../../src/storage/sendstream.js';
import { isRoot, makeTestPool } from '../helpers/pool.js';
import type { TestPool } from '../helpers/pool.js';

const skip = isRoot() ? false : 'needs root: mounts a loop-image btrfs';
const driver = new BtrfsDriver();

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

const openFds = (): number => readdirSync('/proc/self/fd').length;
const isReadOnly = (path: string): boolean => execFileSync('btrfs', ['property', 'get', '-ts', path, 'ro'], { encoding: 'utf8' }).trim() === 'ro=true';
const progsSend = (parent: string, child: string): Buffer =>
  execFileSync('btrfs', ['send', '--no-data', '-q', '-p', parent, child], { maxBuffer: 1 << 28 });

describe('btrfs ioctls in process', { skip }, () => {
  let pool: TestPool;
  let io: BtrfsIoctl;
  let s0: string;
  let s1: string;
  before(async () => {
    pool = makeTestPool();
    const loaded = btrfsIoctl();
    // The build makes the addon (scripts/native.sh); only ZOMG_BTRFS_PROGS=1 turns it off.
    if (process.env.ZOMG_BTRFS_PROGS !== '1') assert.ok(loaded, 'dist/native/zomg-btrfs.node is built and loads');
    io = loaded as BtrfsIoctl;
    // A pair whose data-less stream (~4.5 MiB) is larger than all the buffers between the
    // kernel and a paused reader: 18,000 files added, some renamed and removed.
    const box = join(pool.mnt, 'box');
    await driver.createSubvolume(box);
    for (let d = 0; d < 30; d++) {
      mkdirSync(join(box, `d${d}`));
      for (let f = 0; f < 100; f++) writeFileSync(join(box, `d${d}`, `f${f}`), `${d}/${f}`);
    }
    s0 = join(pool.mnt, 's0');
    await driver.snapshot(box, s0, { readOnly: true });
    for (let d = 0; d < 30; d++) {
      for (let f = 0; f < 600; f++) writeFileSync(join(box, `d${d}`, `n${f}`), 'new');
      execFileSync('mv', [join(box, `d${d}`, 'f0'), join(box, `d${d}`, 'moved')]);
      execFileSync('rm', [join(box, `d${d}`, 'f1')]);
    }
    s1 = join(pool.mnt, 's1');
    await driver.snapshot(box, s1, { readOnly: true });
  });
  after(() => pool?.cleanup());

  it('snapshots read-only and writable, and deletes, as btrfs-progs does', { skip: process.env.ZOMG_BTRFS_PROGS === '1' }, async () => {
    const box = join(pool.mnt, 'box');
    await io.snapshot(box, pool.mnt, 'ro', true);
    await io.snapshot(box, pool.mnt, 'rw', false);
    assert.equal(isReadOnly(join(pool.mnt, 'ro')), true);
    assert.equal(isReadOnly(join(pool.mnt, 'rw')), false);
    assert.equal(readFileSync(join(pool.mnt, 'ro/d3/n7'), 'utf8'), 'new');
    writeFileSync(join(pool.mnt, 'rw/w'), 'writable');
    await io.destroy(pool.mnt, 'ro');
    await io.destroy(pool.mnt, 'rw');
    assert.equal(existsSync(join(pool.mnt, 'ro')), false);
    assert.equal(existsSync(join(pool.mnt, 'rw')), false);
  });

  it('refuses what btrfs-progs refuses, with errno names and nothing made or removed', { skip: process.env.ZOMG_BTRFS_PROGS === '1' }, async () => {
    const box = join(pool.mnt, 'box');
    const code = (c: string) => (err: unknown) => err instanceof IoctlError && err.code === c;
    await assert.rejects(io.snapshot(box, pool.mnt, 's0', true), code('EEXIST'));
    await assert.rejects(io.snapshot(join(box, 'd1'), pool.mnt, 'x', true), code('ENOTSUBVOL'));
    await assert.rejects(io.snapshot(join(pool.mnt, 'nope'), pool.mnt, 'x', true), code('ENOENT'));
    await assert.rejects(io.snapshot(box, join(pool.mnt, 'nope'), 'x', true), code('ENOENT'));
    assert.equal(existsSync(join(pool.mnt, 'x')), false);
    // A plain directory is not deleted, even an empty one (the ioctl alone would remove it).
    mkdirSync(join(pool.mnt, 'plain'));
    await assert.rejects(io.destroy(pool.mnt, 'plain'), code('ENOTSUBVOL'));
    assert.equal(existsSync(join(pool.mnt, 'plain')), true);
    await assert.rejects(io.destroy(pool.mnt, 'missing'), code('ENOENT'));
    // Names and paths C would cut short or misread.
    await assert.rejects(io.snapshot(box, pool.mnt, 'a\0b', true), { code: 'ERR_INVALID_ARG_VALUE' });
    assert.throws(() => io.sendNoData(`${s0}\0`, s1), { code: 'ERR_INVALID_ARG_VALUE' });
    await assert.rejects(io.snapshot(box, pool.mnt, 'a/b', true), RangeError);
    await assert.rejects(io.snapshot(box, pool.mnt, '', true), RangeError);
    await assert.rejects(io.snapshot(box, pool.mnt, 'x'.repeat(5000), true), RangeError);
    await assert.rejects(io.snapshot(box, pool.mnt, 'x', 'yes' as unknown as boolean), TypeError);
    // Send needs read-only subvolume roots on both sides.
    await assert.rejects(collect(io.sendNoData(s0, box)), code('ENOTREADONLY'));
    await assert.rejects(collect(io.sendNoData(box, s1)), code('ENOTREADONLY'));
    await assert.rejects(collect(io.sendNoData(join(s0, 'd1'), s1)), code('ENOTSUBVOL'));
    await assert.rejects(collect(io.sendNoData(s0, join(pool.mnt, 'nope'))), code('ENOENT'));
  });

  it('sends the same bytes as btrfs send --no-data, through the driver too', async () => {
    const want = progsSend(s0, s1);
    assert.ok(want.length > 4 << 20, `a stream of many blocks (${want.length} bytes)`);
    if (io) {
      // Flowing, each chunk is one block from the reader thread: 64 KiB, the last shorter.
      const blocks: Buffer[] = [];
      await new Promise<void>((resolve, reject) => {
        io.sendNoData(s0, s1).on('data', (b: Buffer) => blocks.push(b)).on('end', resolve).on('error', reject);
      });
      assert.ok(Buffer.concat(blocks).equals(want));
      for (const b of blocks.slice(0, -1)) assert.equal(b.length, 65536);
    }
    assert.ok((await collect(driver.sendNoData(s0, s1))).equals(want));
  });

  it('checks every command\'s checksum as it reads, however the reads split the stream', { skip: process.env.ZOMG_BTRFS_PROGS === '1' }, async () => {
    const stream = progsSend(s0, s1);
    // The parser need not check them again: the stream says they were.
    assert.equal(checksumsChecked(io.sendNoData(s0, s1).resume()), true);
    assert.equal(checksumsChecked(driver.sendNoData(s0, s1).resume()), true);
    for (const piece of [1, 3, 10, 4096, 65536, stream.length]) assert.equal(io.checksumsMatch(stream, piece), true, `pieces of ${piece}`);
    // A flipped bit in a header's command id, in its checksum, in a payload, and in the last
    // byte of the stream: each is caught, whatever the pieces.
    const first = 17;
    const len = stream.readUInt32LE(first);
    for (const at of [first + 4, first + 6, first + 10 + Math.floor(len / 2), stream.length - 1]) {
      const bad = Buffer.from(stream);
      bad[at] = (bad[at] as number) ^ 0x10;
      for (const piece of [1, 7, 65536]) assert.equal(io.checksumsMatch(bad, piece), false, `a bit flipped at ${at}, pieces of ${piece}`);
    }
  });

  it('holds the send while the reader pauses, and loses nothing', { skip: process.env.ZOMG_BTRFS_PROGS === '1' }, async () => {
    const stream = io.sendNoData(s0, s1);
    const chunks: Buffer[] = [];
    stream.pause();
    await sleep(300);
    // Paused, at most the stream's buffer (1 MiB) plus the blocks queued for it were read.
    assert.ok(stream.readableLength <= (1 << 20) + 5 * 65536, `buffered ${stream.readableLength}`);
    for await (const c of stream) {
      chunks.push(c as Buffer);
      if (chunks.length % 8 === 0) await sleep(5);
    }
    assert.ok(Buffer.concat(chunks).equals(progsSend(s0, s1)));
  });

  it('ends a send stopped early, aborted or run many at once, leaking nothing', { skip: process.env.ZOMG_BTRFS_PROGS === '1' }, async () => {
    const fds = openFds();
    const early = io.sendNoData(s0, s1);
    for await (const _chunk of early) break;
    assert.equal(early.destroyed, true);

    const controller = new AbortController();
    await io.snapshot(s1, pool.mnt, 'aborted', true);
    const aborted = io.sendNoData(s0, join(pool.mnt, 'aborted'), { signal: controller.signal });
    aborted.once('data', () => controller.abort());
    await assert.rejects(collect(aborted), { name: 'AbortError' });
    // The error comes once the send has let go: the subvolume deletes at once.
    await io.destroy(pool.mnt, 'aborted');
    const already = new AbortController();
    already.abort();
    await assert.rejects(collect(io.sendNoData(s0, s1, { signal: already.signal })), { name: 'AbortError' });

    const want = progsSend(s0, s1);
    const many = await Promise.all(Array.from({ length: 8 }, () => collect(io.sendNoData(s0, s1))));
    for (const got of many) assert.ok(got.equals(want));

    // The threads let go of their pipes and subvolumes once each send has ended.
    for (let i = 0; i < 50 && openFds() > fds; i++) await sleep(20);
    assert.ok(openFds() <= fds, `no descriptor left open (${openFds()} open, ${fds} before)`);
    await io.snapshot(s1, pool.mnt, 'gone', true);
    const stopped = io.sendNoData(s0, join(pool.mnt, 'gone'));
    for await (const _chunk of stopped) break;
    await sleep(50);
    await io.destroy(pool.mnt, 'gone');
    assert.equal(existsSync(join(pool.mnt, 'gone')), false);
  });

  it('ends with an AbortError when aborted after the kernel is done but before the reader is', { skip: process.env.ZOMG_BTRFS_PROGS === '1' }, async () => {
    const tiny = join(pool.mnt, 'tiny');
    await driver.createSubvolume(tiny);
    await io.snapshot(tiny, pool.mnt, 'tiny0', true);
    writeFileSync(join(tiny, 'f'), 'x');
    await io.snapshot(tiny, pool.mnt, 'tiny1', true);
    // A stream that fits the buffers whole: the send has ended when the abort comes.
    const controller = new AbortController();
    const stream = io.sendNoData(join(pool.mnt, 'tiny0'), join(pool.mnt, 'tiny1'), { signal: controller.signal });
    stream.pause();
    await sleep(300);
    controller.abort();
    await assert.rejects(collect(stream), { name: 'AbortError' });
    for (const name of ['tiny0', 'tiny1', 'tiny']) await io.destroy(pool.mnt, name);
  });

  it('survives a worker thread that ends mid-send, and leaves the subvolume free', { skip: process.env.ZOMG_BTRFS_PROGS === '1' }, async () => {
    // In a child process, so that a crash is a failed exit code, not a lost test runner.
    const script = join(pool.dir, 'workers.mjs');
    writeFileSync(
      script,
      `import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
      const mod = ${JSON.stringify(new URL('../../src/storage/btrfs-ioctl.js', import.meta.url).href)};
      const [parent, child] = ${JSON.stringify([s0, s1])};
      if (isMainThread) {
        (await import(mod)).btrfsIoctl(); // loaded here too: the library outlives the workers
        for (let i = 0; i < 24; i++) {
          const w = new Worker(new URL(import.meta.url), { workerData: i % 3 });
          await new Promise((r) => w.once('message', r));
          await new Promise((r) => setTimeout(r, i % 7));
          await w.terminate();
        }
        process.stdout.write('done');
      } else {
        const io = (await import(mod)).btrfsIoctl();
        for (let k = 0; k < 3; k++) {
          const s = io.sendNoData(parent, child);
          if (workerData === 0) s.pause();
          else if (workerData === 1) s.on('data', () => { const t = Date.now(); while (Date.now() - t < 2); });
          else s.resume();
        }
        parentPort.postMessage('started');
      }`,
    );
    const out = execFileSync(process.execPath, [script], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(out, 'done');
    // Nothing still holds s1: a snapshot of it, sent from a worker that is then ended, deletes.
    await io.snapshot(s1, pool.mnt, 'worker-held', true);
    writeFileSync(
      script,
      `import { Worker, isMainThread, parentPort } from 'node:worker_threads';
      const mod = ${JSON.stringify(new URL('../../src/storage/btrfs-ioctl.js', import.meta.url).href)};
      if (isMainThread) {
        const io = (await import(mod)).btrfsIoctl();
        const w = new Worker(new URL(import.meta.url));
        await new Promise((r) => w.once('message', r));
        await w.terminate();
        await io.destroy(${JSON.stringify(pool.mnt)}, 'worker-held');
        process.stdout.write('deleted');
      } else {
        (await import(mod)).btrfsIoctl().sendNoData(${JSON.stringify(s0)}, ${JSON.stringify(join(pool.mnt, 'worker-held'))}).pause();
        setTimeout(() => parentPort.postMessage('started'), 200);
      }`,
    );
    assert.equal(execFileSync(process.execPath, [script], { encoding: 'utf8', timeout: 60_000 }), 'deleted');
  });

  it('keeps a subvolume while a send holds it, as btrfs-progs does', { skip: process.env.ZOMG_BTRFS_PROGS === '1' }, async () => {
    await io.snapshot(s1, pool.mnt, 'held', true);
    const want = progsSend(s0, join(pool.mnt, 'held'));
    const stream = io.sendNoData(s0, join(pool.mnt, 'held'));
    stream.pause();
    await sleep(300); // the send is blocked on a full pipe, mid-stream
    await assert.rejects(io.destroy(pool.mnt, 'held'), (err: unknown) => err instanceof IoctlError && err.code === 'EPERM');
    assert.ok((await collect(stream)).equals(want), 'the whole stream, untouched by the refused delete');
    await io.destroy(pool.mnt, 'held');
  });

  it('maps ioctl failures through the driver to ZOMG_BTRFS_FAILED without host paths', async () => {
    await assert.rejects(driver.snapshot(join(pool.mnt, 'box'), s0, { readOnly: true, withoutNested: true }), (err: unknown) => {
      assert.ok(err instanceof ToolError);
      assert.equal(err.code, 'ZOMG_BTRFS_FAILED');
      // btrfs-progs reads an existing target as a directory to snapshot into (read-only here).
      assert.match(err.message, /snapshot a subvolume: (file exists|read-only file system)/);
      assert.ok(!err.message.includes(pool.dir));
      return true;
    });
    await assert.rejects(collect(driver.sendNoData(s0, join(pool.mnt, 'box'))), (err: unknown) => {
      assert.ok(err instanceof ToolError);
      assert.match(err.message, /send a change stream: is not read-only/i);
      return true;
    });
  });
});
