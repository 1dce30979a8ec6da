/**
 * Rootfs tarball import on a real btrfs pool: fidelity of every entry kind in each
 * compression, file and stream sources, refusal of hostile archives (nothing written outside
 * the root), the error codes a user sees, and the architecture check.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createReadStream, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, statSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { describe, it } from 'node:test';
import type { Progress } from '../../src/core/types.js';
import { verifyArchitecture } from '../../src/storage/arch.js';
import { extractRootfs } from '../../src/storage/tar.js';
import {
  type Compression,
  arm64RootfsTar,
  busyboxRootfsTar,
  hostileArchives,
  noElfRootfsTar,
  paxRecords,
  parentSymlinks,
  specialTar,
  compress,
  compressedBomb,
  seeded,
  tarBuffer,
  textTar,
} from '../helpers/fixtures.js';
import { type TestPool, isRoot, makeTestPool } from '../helpers/pool.js';

const skip = isRoot() ? false : 'needs root (btrfs loop pool, device nodes)';
const COMPRESSIONS: Compression[] = ['tar', 'gz', 'zst', 'xz'];

async function withPool(fn: (pool: TestPool, subvol: (name: string) => string) => Promise<void>, sizeMb?: number): Promise<void> {
  const pool = makeTestPool(sizeMb);
  try {
    await fn(pool, (name) => {
      const path = join(pool.mnt, name);
      execFileSync('btrfs', ['-q', 'subvolume', 'create', path]);
      return path;
    });
  } finally {
    pool.cleanup();
  }
}

function xattr(path: string, name: string): string {
  return execFileSync('getfattr', ['--absolute-names', '-n', name, '-e', 'hex', '--only-values', path]).toString('hex');
}

function errorCode(code: string, message?: RegExp): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof Error, `expected an Error, got ${String(err)}`);
    assert.equal((err as Error & { code?: string }).code, code, `code of: ${err.message}`);
    if (message) assert.match(err.message, message);
    return true;
  };
}

function assertSpecialEntries(root: string): void {
  const suid = statSync(join(root, 'bin/suid'));
  assert.equal(suid.uid, 1234);
  assert.equal(suid.gid, 5678);
  assert.equal(suid.mode & 0o7777, 0o4755, 'setuid bit kept on a chowned file');
  // cap_net_raw+ep, exactly as written (see make-fixtures.sh)
  assert.equal(Buffer.from(xattr(join(root, 'bin/ping'), 'security.capability'), 'hex').toString('hex'), '0100000200200000000000000000000000000000');
  assert.equal(execFileSync('getfattr', ['--absolute-names', '-n', 'user.foo', '--only-values', join(root, 'xattr-file')]).toString(), 'bar');
  const a = statSync(join(root, 'hard-a'));
  const b = statSync(join(root, 'hard-b'));
  assert.equal(a.ino, b.ino, 'hard-a and hard-b are one inode');
  assert.equal(a.nlink, 2);
  const sym = lstatSync(join(root, 'sym'));
  assert.ok(sym.isSymbolicLink());
  assert.equal(readlinkSync(join(root, 'sym')), 'hard-a');
  assert.equal(sym.mtime.toISOString(), '2000-01-01T00:00:00.000Z');
  const chr = lstatSync(join(root, 'dev/null'));
  assert.ok(chr.isCharacterDevice());
  assert.equal(chr.rdev, (1 << 8) | 3);
  const blk = lstatSync(join(root, 'dev/loopx'));
  assert.ok(blk.isBlockDevice());
  assert.equal(blk.rdev, (7 << 8) | 200);
  assert.ok(lstatSync(join(root, 'fifo')).isFIFO());
  const priv = statSync(join(root, 'private'));
  assert.equal(priv.mode & 0o7777, 0o700);
  assert.equal(priv.uid, 42);
  assert.equal(priv.gid, 42);
}

describe('extractRootfs', { skip }, () => {
  for (const c of COMPRESSIONS) {
    it(`extracts the busybox rootfs (.${c === 'tar' ? 'tar' : `tar.${c}`}) and keeps every special entry`, async () => {
      await withPool(async (_pool, subvol) => {
        const root = subvol('busybox');
        const events: Progress[] = [];
        const file = busyboxRootfsTar(c);
        await extractRootfs(file, root, { onProgress: (p) => events.push(p) });
        assert.ok(statSync(join(root, 'bin/busybox')).isFile());
        assert.equal(readlinkSync(join(root, 'bin/sh')), 'busybox');
        assert.equal(statSync(join(root, 'tmp')).mode & 0o7777, 0o1777);
        assert.equal(execFileSync('chroot', [root, '/bin/sh', '-c', 'echo hello']).toString(), 'hello\n');
        await verifyArchitecture(root);
        const last = events[events.length - 1];
        assert.deepEqual(last, { phase: 'extract', done: statSync(file).size, total: statSync(file).size });

        const special = subvol('special');
        await extractRootfs(specialTar(c), special, {});
        assertSpecialEntries(special);
      });
    });
  }

  it('reads a stream once (an HTTP upload): zstd and gzip', async () => {
    await withPool(async (_pool, subvol) => {
      const a = subvol('a');
      const events: Progress[] = [];
      await extractRootfs(createReadStream(specialTar('zst'), { highWaterMark: 4096 }), a, { onProgress: (p) => events.push(p), totalBytes: 123 });
      assertSpecialEntries(a);
      assert.equal(events[events.length - 1]?.total, 123);
      const b = subvol('b');
      // One byte per chunk at first: the magic bytes arrive split.
      const gz = readFileSync(specialTar('gz'));
      const chunks = [gz.subarray(0, 1), gz.subarray(1, 2), gz.subarray(2, 700), gz.subarray(700)];
      await extractRootfs(Readable.from(chunks), b, {});
      assertSpecialEntries(b);
    });
  });

  it('agrees with plain GNU tar on archives in every format tar writes (long names, sparse files)', async () => {
    await withPool(async (pool, subvol) => {
      const tree = join(pool.mnt, 'tree');
      const deep = join(tree, 'd'.repeat(90), 'e'.repeat(90), 'f'.repeat(90));
      mkdirSync(deep, { recursive: true });
      writeFileSync(join(deep, 'g'.repeat(200)), 'long name\n');
      symlinkSync('l'.repeat(150), join(deep, 'long-link'));
      execFileSync('ln', [join(deep, 'g'.repeat(200)), join(tree, 'hard-to-long')]);
      // A sparse file with many holes: old GNU sparse headers need extension blocks.
      const sparse = join(tree, 'sparse');
      execFileSync('truncate', ['-s', '64M', sparse]);
      for (let i = 0; i < 12; i++) execFileSync('dd', ['if=/dev/urandom', `of=${sparse}`, 'bs=4096', 'count=1', `seek=${i * 1000}`, 'conv=notrunc', 'status=none']);
      writeFileSync(join(tree, 'plain'), 'x'.repeat(5000));
      const formats: Array<{ name: string; args: string[] }> = [
        { name: 'gnu', args: ['--format=gnu', '--sparse'] },
        { name: 'oldgnu', args: ['--format=oldgnu', '--sparse'] },
        { name: 'pax-0.0', args: ['--format=pax', '--sparse', '--sparse-version=0.0'] },
        { name: 'pax-0.1', args: ['--format=pax', '--sparse', '--sparse-version=0.1'] },
        { name: 'pax-1.0', args: ['--format=pax', '--sparse', '--sparse-version=1.0'] },
      ];
      const listing = (dir: string): string =>
        execFileSync('find', ['.', '-printf', '%p %M %U %G %s %l %n %T@\n'], { cwd: dir }).toString().split('\n').sort().join('\n');
      for (const f of formats) {
        const file = join(pool.dir, `${f.name}.tar`);
        execFileSync('tar', ['-C', tree, '-cf', file, ...f.args, '.']);
        const ours = subvol(`ours-${f.name}`);
        await extractRootfs(file, ours, {});
        const theirs = subvol(`theirs-${f.name}`);
        execFileSync('tar', ['-xf', file, '-C', theirs, '--numeric-owner', '-p']);
        assert.equal(listing(ours), listing(theirs), f.name);
        assert.ok(readFileSync(join(ours, 'sparse')).equals(readFileSync(sparse)), `${f.name}: sparse content`);
      }
      // ustar has no long-name records: names up to 256 bytes use its prefix field.
      const utree = join(pool.mnt, 'utree');
      mkdirSync(join(utree, 'd'.repeat(90), 'e'.repeat(90)), { recursive: true });
      writeFileSync(join(utree, 'd'.repeat(90), 'e'.repeat(90), 'short'), 'prefixed\n');
      const ustar = join(pool.dir, 'ustar.tar');
      execFileSync('tar', ['-C', utree, '-cf', ustar, '--format=ustar', '.']);
      assert.ok(readFileSync(ustar).includes('d'.repeat(90)), 'the name went to the prefix field');
      const u = subvol('ustar');
      await extractRootfs(ustar, u, {});
      assert.equal(readFileSync(join(u, 'd'.repeat(90), 'e'.repeat(90), 'short'), 'utf8'), 'prefixed\n');
      // The same busybox rootfs through both paths.
      const bbOurs = subvol('bb-ours');
      const bbTheirs = subvol('bb-theirs');
      await extractRootfs(busyboxRootfsTar('xz'), bbOurs, {});
      execFileSync('tar', ['-xf', busyboxRootfsTar('xz'), '-C', bbTheirs, '--numeric-owner', '-p', '--xattrs', '--xattrs-include=*']);
      assert.equal(listing(bbOurs), listing(bbTheirs));
    }, 1024);
  });

  it('extracts on top of a parent, through relative in-root symlinks', async () => {
    await withPool(async (_pool, subvol) => {
      const root = subvol('parent');
      await extractRootfs(busyboxRootfsTar('zst'), root, {});
      mkdirSync(join(root, 'usr/lib'));
      symlinkSync('usr/lib', join(root, 'lib'));
      const layer = tarBuffer([
        { name: './', type: '5' },
        { name: './lib/', type: '5' },
        { name: './lib/added', data: 'via the link\n' },
        { name: './etc/motd', data: 'hi\n' },
      ]);
      await extractRootfs(Readable.from([layer]), root, { hasParent: true });
      assert.equal(readFileSync(join(root, 'usr/lib/added'), 'utf8'), 'via the link\n');
      assert.ok(lstatSync(join(root, 'lib')).isSymbolicLink(), 'the parent link is kept (--keep-directory-symlink)');
      assert.equal(readFileSync(join(root, 'etc/motd'), 'utf8'), 'hi\n');
      assert.ok(statSync(join(root, 'bin/busybox')).isFile(), 'the parent content stays');
    });
  });

  describe('refuses hostile archives before anything escapes', () => {
    for (const kase of hostileArchives('/OUTSIDE')) {
      it(kase.name, async () => {
        await withPool(async (pool, subvol) => {
          // The attacks name '/OUTSIDE'; rewrite them to this pool's canary directory.
          const outside = join(pool.mnt, 'outside');
          mkdirSync(outside);
          const cases = hostileArchives(outside);
          const real = cases.find((k) => k.name === kase.name);
          assert.ok(real);
          // Whole, and in 100-byte chunks so tar has already extracted the members before
          // the bad one (the symlink of a write-through attack) when the gate refuses.
          for (const chunked of [false, true]) {
            const root = subvol(chunked ? 'chunked' : 'whole');
            if (real.onParent) {
              mkdirSync(join(root, 'usr/lib'), { recursive: true });
              for (const l of parentSymlinks(outside)) symlinkSync(l.target, join(root, l.path));
            }
            const chunks = chunked ? Array.from({ length: Math.ceil(real.archive.length / 100) }, (_, i) => real.archive.subarray(i * 100, i * 100 + 100)) : [real.archive];
            await assert.rejects(extractRootfs(Readable.from(chunks), root, { hasParent: real.onParent === true }), errorCode('ZOMG_UNSAFE_ARCHIVE', /archive member ".*" is unsafe/));
            assert.deepEqual(readdirSync(outside), [], 'nothing was written outside the root');
            assert.ok(!existsSync(join(pool.mnt, 'pwned')));
          }
        });
      });
    }

    it('through a compressed stream too (the decompressor is stopped)', async () => {
      await withPool(async (pool, subvol) => {
        const outside = join(pool.mnt, 'outside');
        mkdirSync(outside);
        const kase = hostileArchives(outside).find((k) => k.name.startsWith('symlink then write'));
        assert.ok(kase);
        const zst = execFileSync('zstd', ['-q', '-c'], { input: kase.archive });
        await assert.rejects(extractRootfs(Readable.from([zst]), subvol('root'), {}), errorCode('ZOMG_UNSAFE_ARCHIVE'));
        assert.deepEqual(readdirSync(outside), []);
      });
    });

    it('stops at the first zero block: a member hidden after it is never extracted', async () => {
      await withPool(async (pool, subvol) => {
        const outside = join(pool.mnt, 'outside');
        mkdirSync(outside);
        const first = tarBuffer([{ name: 'evil', type: '2', linkname: outside }], { end: false });
        const hidden = tarBuffer([{ name: 'evil/pwned', data: 'x' }]);
        const root = subvol('root');
        await extractRootfs(Readable.from([Buffer.concat([first, Buffer.alloc(512), hidden])]), root, {});
        assert.equal(readlinkSync(join(root, 'evil')), outside);
        assert.deepEqual(readdirSync(outside), []);
      });
    });
  });

  it('says what is wrong with a file that cannot be imported', async () => {
    // Every archive here is built in the test, byte for byte the same on every machine, so
    // each one fails in exactly the way it is meant to.
    await withPool(async (pool, subvol) => {
      const root = subvol('root');
      const text = join(pool.dir, 'not-a-tar.tar');
      writeFileSync(text, 'this is not a tar archive, just some text\n'.repeat(40));
      await assert.rejects(extractRootfs(text, root, {}), errorCode('ZOMG_INVALID_ARCHIVE', /not a tar archive/));
      await assert.rejects(extractRootfs(join(pool.dir, 'missing.tar'), root, {}), errorCode('ZOMG_FILE_NOT_FOUND'));
      await assert.rejects(extractRootfs(pool.dir, root, {}), errorCode('ZOMG_NOT_A_FILE'));
      const empty = join(pool.dir, 'empty.tar');
      writeFileSync(empty, '');
      await assert.rejects(extractRootfs(empty, root, {}), errorCode('ZOMG_INVALID_ARCHIVE', /empty/));
      // Cut in the middle of a member's data: a plain tar, and the same compressed whole.
      const tar = textTar(1);
      const cut = join(pool.dir, 'cut.tar');
      writeFileSync(cut, tar.subarray(0, 3 * 512 + 10_000));
      await assert.rejects(extractRootfs(cut, root, {}), errorCode('ZOMG_INVALID_ARCHIVE', /truncated \(it ends in the middle of a member\)/));
      const cutThenZst = compress(tar.subarray(0, 3 * 512 + 10_000), 'zst');
      await assert.rejects(extractRootfs(Readable.from([cutThenZst]), root, {}), errorCode('ZOMG_INVALID_ARCHIVE', /truncated \(it ends in the middle of a member\)/));
      const corrupt = tarBuffer([{ name: 'a', data: 'a' }, { name: 'b', data: 'b', badChecksum: true }]);
      await assert.rejects(extractRootfs(Readable.from([corrupt]), root, {}), errorCode('ZOMG_INVALID_ARCHIVE', /checksum/));
      const twoPax = tarBuffer([{ name: 'x1', type: 'x', data: paxRecords({ size: '0' }) }, { name: 'a', data: 'abc', pax: { path: 'b' } }]);
      await assert.rejects(extractRootfs(Readable.from([twoPax]), root, {}), errorCode('ZOMG_INVALID_ARCHIVE', /two 'x' records/));
      const lying = tarBuffer([{ name: 'dev', type: '5', sizeField: 512, data: Buffer.alloc(512) }]);
      await assert.rejects(extractRootfs(Readable.from([lying]), root, {}), errorCode('ZOMG_INVALID_ARCHIVE', /directory with data/));
    });
  });

  describe('names the compression of a corrupt or truncated stream, whatever tar made of it', () => {
    // Seeded offsets: the same 12 damaged copies of each stream on every run. Each is a
    // corruption (8 bytes overwritten) or a cut; the magic bytes stay intact.
    const NAMES = { gz: 'gzip', zst: 'zstd', xz: 'xz' } as const;
    for (const c of ['gz', 'zst', 'xz'] as const) {
      it(`${NAMES[c]}: ZOMG_INVALID_ARCHIVE "corrupt ${NAMES[c]} data", never a tar symptom`, async () => {
        await withPool(async (_pool, subvol) => {
          const whole = compress(textTar(7), c);
          const rnd = seeded(1000 + whole.length);
          const seen = new Set<string>();
          for (let i = 0; i < 12; i++) {
            const offset = 16 + Math.floor(rnd() * (whole.length - 32));
            let damaged: Buffer;
            let how: string;
            if (i % 3 === 2) {
              damaged = whole.subarray(0, offset);
              how = `cut at byte ${offset}`;
            } else {
              damaged = Buffer.from(whole);
              for (let j = 0; j < 8; j++) damaged[offset + j] = Math.floor(rnd() * 256);
              how = `8 bytes overwritten at byte ${offset}`;
            }
            const root = subvol(`root-${i}`);
            // In 64 kB chunks, as an upload arrives: tar sees garbage before the decompressor's checksum.
            const chunks = Array.from({ length: Math.ceil(damaged.length / 65536) }, (_, k) => damaged.subarray(k * 65536, (k + 1) * 65536));
            await assert.rejects(extractRootfs(Readable.from(chunks), root, {}), (err: unknown) => {
              assert.ok(err instanceof Error);
              assert.equal((err as Error & { code?: string }).code, 'ZOMG_INVALID_ARCHIVE', `${how}: ${err.message}`);
              assert.match(err.message, new RegExp(`^corrupt ${NAMES[c]} data in the archive: `), how);
              assert.doesNotMatch(err.message, /pax|checksum at byte|tar header/, how);
              if (i % 3 === 2) assert.match(err.message, /truncated/, how);
              seen.add(err.message);
              return true;
            });
          }
          assert.ok(seen.size >= 2, 'cuts and corruptions are told apart');
        });
      });
    }
  });

  it('keeps a tar error in an intact compressed stream, and bounds the wait for the decompressor', async () => {
    await withPool(async (_pool, subvol) => {
      const bad = tarBuffer([{ name: 'a', data: 'a' }, { name: 'b', data: 'b', badChecksum: true }]);
      await assert.rejects(extractRootfs(Readable.from([compress(bad, 'gz')]), subvol('intact'), {}), errorCode('ZOMG_INVALID_ARCHIVE', /bad tar header checksum/));
      // Behind the bad header, 1.1 GiB of zeros (1 MiB zstd frames), then a cut frame: the
      // decompressor's complaint would come after more than zomg reads once tar has failed.
      const mb = compress(Buffer.alloc(1 << 20), 'zst');
      const longTail = Buffer.concat([compress(bad.subarray(0, 1536), 'zst'), ...Array.from({ length: 1100 }, () => mb), mb.subarray(0, mb.length - 6)]);
      await assert.rejects(extractRootfs(Readable.from([longTail]), subvol('bounded'), {}), errorCode('ZOMG_INVALID_ARCHIVE', /bad tar header checksum/));
    });
  });

  it('reports a full pool as PoolFullError', async () => {
    await withPool(async (pool, subvol) => {
      const root = subvol('root');
      const size = 200 * 1024 * 1024;
      const head = tarBuffer([{ name: 'big', sizeField: size }], { end: false });
      async function* gen(): AsyncGenerator<Buffer> {
        yield head;
        const mb = Buffer.alloc(1 << 20, 0xa5);
        for (let i = 0; i < size / mb.length; i++) yield mb;
        yield Buffer.alloc(1024);
      }
      await assert.rejects(extractRootfs(Readable.from(gen()), root, {}), errorCode('ZOMG_POOL_FULL'));
      assert.ok(pool.mnt);
    }, 128);
  });

  it('reports a compression bomb that fills the pool as PoolFullError, whatever the compression', async () => {
    // 256 MB is not a mixed-mode btrfs: metadata keeps room when the data is full, and tar
    // then reports only a short write ("Wrote only 6656 of 10240 bytes").
    await withPool(async (pool, subvol) => {
      for (const c of ['gz', 'zst', 'xz'] as const) {
        const bomb = compressedBomb(c, 400 << 20);
        assert.ok(bomb.length < 2 << 20, `the ${c} bomb is small (${bomb.length} bytes)`);
        const root = subvol(`bomb-${c}`);
        await assert.rejects(extractRootfs(Readable.from([bomb]), root, {}), errorCode('ZOMG_POOL_FULL', /filled up while extracting/));
        execFileSync('btrfs', ['-q', 'subvolume', 'delete', '-c', root]);
        execFileSync('btrfs', ['-q', 'subvolume', 'sync', pool.mnt]);
      }
    }, 256);
  });

  it('stops when aborted', async () => {
    await withPool(async (_pool, subvol) => {
      const input = new PassThrough();
      input.write(tarBuffer([{ name: 'slow', sizeField: 1 << 20 }], { end: false }));
      const ac = new AbortController();
      const started = Date.now();
      setTimeout(() => ac.abort(new Error('user gave up')), 200);
      await assert.rejects(extractRootfs(input, subvol('root'), { signal: ac.signal }), /user gave up/);
      assert.ok(Date.now() - started < 5000);
    });
  });
});

describe('verifyArchitecture', { skip }, () => {
  it('accepts the busybox rootfs and refuses aarch64 or ELF-less ones', async () => {
    await withPool(async (_pool, subvol) => {
      const bb = subvol('bb');
      await extractRootfs(busyboxRootfsTar(), bb, {});
      await verifyArchitecture(bb);

      const arm = subvol('arm');
      await extractRootfs(arm64RootfsTar(), arm, {});
      await assert.rejects(verifyArchitecture(arm), errorCode('ZOMG_WRONG_ARCH', /built for aarch64, zomg needs x86-64/));

      const none = subvol('none');
      await extractRootfs(noElfRootfsTar(), none, {});
      await assert.rejects(verifyArchitecture(none), errorCode('ZOMG_WRONG_ARCH', /no x86-64 ELF binaries were found/));
    });
  });

  it('resolves links inside the root and never follows them out', async () => {
    await withPool(async (_pool, subvol) => {
      // bin/sh -> /bin/busybox is absolute: inside the box it means <root>/bin/busybox, and
      // the host's /bin/busybox (or /bin/sh) must not decide.
      const root = subvol('root');
      mkdirSync(join(root, 'bin'));
      mkdirSync(join(root, 'usr'));
      symlinkSync('/bin/busybox', join(root, 'bin/sh'));
      symlinkSync('../../../../../../bin/bash', join(root, 'usr/env-escape'));
      symlinkSync('usr', join(root, 'loop'));
      await assert.rejects(verifyArchitecture(root), errorCode('ZOMG_WRONG_ARCH', /no x86-64/));

      // Debian's merged /usr: bin -> usr/bin, usr/bin/sh -> an absolute link to the real binary.
      const merged = subvol('merged');
      const bb = subvol('bb');
      await extractRootfs(busyboxRootfsTar(), bb, {});
      mkdirSync(join(merged, 'usr/bin'), { recursive: true });
      writeFileSync(join(merged, 'usr/bin/busybox'), readFileSync(join(bb, 'bin/busybox')), { mode: 0o755 });
      symlinkSync('/usr/bin/busybox', join(merged, 'usr/bin/sh'));
      symlinkSync('usr/bin', join(merged, 'bin'));
      await verifyArchitecture(merged);
    });
  });
});
