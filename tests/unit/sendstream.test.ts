import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { replayCommands, type Candidate } from '../../src/storage/diff/replay.js';
import { SendStreamError, SendStreamParser, crc32cRaw, parseSendStream, type SendCommand } from '../../src/storage/sendstream.js';

// Command and attribute ids of send stream v1 (btrfs send.h).
const C = { snapshot: 2, mkfile: 3, mkdir: 4, rename: 9, link: 10, unlink: 11, rmdir: 12, set_xattr: 13, chmod: 18, utimes: 20, end: 21, update_extent: 22 };
const T = { UUID: 1, CTRANSID: 2, INO: 3, SIZE: 4, MODE: 5, CTIME: 9, MTIME: 10, ATIME: 11, XATTR_NAME: 13, XATTR_DATA: 14, PATH: 15, PATH_TO: 16, PATH_LINK: 17, FILE_OFFSET: 18, CLONE_UUID: 20, CLONE_CTRANSID: 21 };

const b = (s: string | number[]): Buffer => (typeof s === 'string' ? Buffer.from(s, 'utf8') : Buffer.from(s));
const u64 = (n: number): Buffer => {
  const x = Buffer.alloc(8);
  x.writeBigUInt64LE(BigInt(n));
  return x;
};
/** A path as the parser gives it: its bytes as a latin1 string. */
const lat = (s: string | number[]): string => b(s).toString('latin1');
const ts = (sec: number): Buffer => Buffer.concat([u64(sec), Buffer.alloc(4)]);

function header(version = 1): Buffer {
  const v = Buffer.alloc(4);
  v.writeUInt32LE(version);
  return Buffer.concat([Buffer.from('btrfs-stream\0', 'latin1'), v]);
}

function cmd(id: number, attrs: [number, Buffer][]): Buffer {
  const payload = Buffer.concat(
    attrs.map(([type, value]) => {
      const h = Buffer.alloc(4);
      h.writeUInt16LE(type, 0);
      h.writeUInt16LE(value.length, 2);
      return Buffer.concat([h, value]);
    }),
  );
  const h = Buffer.alloc(10);
  h.writeUInt32LE(payload.length, 0);
  h.writeUInt16LE(id, 4);
  h.writeUInt32LE(crc32cRaw(crc32cRaw(0, h), payload), 6);
  return Buffer.concat([h, payload]);
}

const snapshotCmd = (): Buffer =>
  cmd(C.snapshot, [
    [T.PATH, b('box@1')],
    [T.UUID, Buffer.alloc(16, 1)],
    [T.CTRANSID, u64(12)],
    [T.CLONE_UUID, Buffer.alloc(16, 2)],
    [T.CLONE_CTRANSID, u64(7)],
  ]);

function sampleStream(): Buffer {
  return Buffer.concat([
    header(),
    snapshotCmd(),
    cmd(C.mkfile, [[T.PATH, b('o300-12-0')], [T.INO, u64(300)]]),
    cmd(C.rename, [[T.PATH, b('o300-12-0')], [T.PATH_TO, b([0x64, 0x2f, 0xff, 0x0a])]]),
    cmd(C.update_extent, [[T.PATH, b([0x64, 0x2f, 0xff, 0x0a])], [T.FILE_OFFSET, u64(0)], [T.SIZE, u64(4096)]]),
    cmd(C.set_xattr, [[T.PATH, b('etc/hostname')], [T.XATTR_NAME, b('user.box')], [T.XATTR_DATA, b('hello')]]),
    cmd(C.utimes, [[T.PATH, b('')], [T.ATIME, ts(1)], [T.MTIME, ts(2)], [T.CTIME, ts(3)]]),
    cmd(C.chmod, [[T.PATH, b('etc/shells')], [T.MODE, u64(0o600)]]),
    cmd(C.end, []),
  ]);
}

const expectedCommands: SendCommand[] = [
  { cmd: 'snapshot', path: lat('box@1'), uuid: Buffer.alloc(16, 1), ctransid: 12, cloneUuid: Buffer.alloc(16, 2), cloneCtransid: 7 },
  { cmd: 'mkfile', path: lat('o300-12-0'), ino: 300 },
  { cmd: 'rename', path: lat('o300-12-0'), to: lat([0x64, 0x2f, 0xff, 0x0a]) },
  { cmd: 'update_extent', path: lat([0x64, 0x2f, 0xff, 0x0a]), offset: 0, length: 4096 },
  { cmd: 'set_xattr', path: lat('etc/hostname'), name: b('user.box'), data: b('hello') },
  { cmd: 'utimes', path: lat(''), atime: { sec: 1, nsec: 0 }, mtime: { sec: 2, nsec: 0 }, ctime: { sec: 3, nsec: 0 } },
  { cmd: 'chmod', path: lat('etc/shells'), mode: 0o600 },
  { cmd: 'end' },
];

function parseAll(chunks: Buffer[]): SendCommand[] {
  const parser = new SendStreamParser();
  const out = chunks.flatMap((c) => parser.push(c));
  parser.finish();
  return out;
}

test('crc32cRaw is crc32c without the inversions', () => {
  // The standard check value of CRC-32C is 0xe3069283 for "123456789".
  assert.equal((crc32cRaw(0xffffffff, b('123456789')) ^ 0xffffffff) >>> 0, 0xe3069283);
});

test('parses a stream in one chunk, split at every offset, and byte by byte', () => {
  const stream = sampleStream();
  assert.deepEqual(parseAll([stream]), expectedCommands);
  for (let i = 0; i <= stream.length; i++) {
    assert.deepEqual(parseAll([stream.subarray(0, i), stream.subarray(i)]), expectedCommands, `split at ${i}`);
  }
  const bytes = [...stream].map((x) => Buffer.of(x));
  assert.deepEqual(parseAll(bytes), expectedCommands);
});

test('parseSendStream reads a Readable', async () => {
  const stream = sampleStream();
  const chunks = [stream.subarray(0, 5), stream.subarray(5, 40), stream.subarray(40)];
  const got: SendCommand[] = [];
  for await (const c of parseSendStream(Readable.from(chunks))) got.push(c);
  assert.deepEqual(got, expectedCommands);
});

test('garbage, other versions, corruption and truncation fail clearly', async () => {
  const good = sampleStream();
  const fails = (chunks: Buffer[], pattern: RegExp): void => {
    assert.throws(() => parseAll(chunks), (err: unknown) => err instanceof SendStreamError && pattern.test(err.message));
  };
  fails([b('hello world, not a stream')], /header/);
  fails([b('btr'), b('XXs')], /header/);
  fails([b('btrfs-stream')], /truncated stream header/);
  fails([], /empty stream/);
  fails([Buffer.concat([header(2), cmd(C.end, [])])], /version 2/);
  fails([good.subarray(0, good.length - 3)], /truncated/);
  fails([good.subarray(0, good.length - 10)], /before its end command/);
  fails([Buffer.concat([good, cmd(C.end, [])])], /after the end command/);
  fails([Buffer.concat([good, b('xx')])], /after the end command/);
  const corrupt = Buffer.from(good);
  const at = header().length + 20;
  corrupt.writeUInt8(corrupt.readUInt8(at) ^ 0x40, at);
  fails([corrupt], /checksum/);
  fails([Buffer.concat([header(), cmd(99, [])])], /unknown command id 99/);
  fails([Buffer.concat([header(), cmd(C.mkfile, [[T.PATH, b('x')]])])], /lacks attribute 3/);
  const overrun = cmd(C.unlink, [[T.PATH, b('abc')]]);
  overrun.writeUInt16LE(200, 12); // attribute length beyond the command
  overrun.writeUInt32LE(crc32cRaw(crc32cRaw(0, Buffer.concat([overrun.subarray(0, 6), Buffer.alloc(4)])), overrun.subarray(10)), 6);
  fails([Buffer.concat([header(), overrun])], /overruns/);
  const huge = Buffer.alloc(10);
  huge.writeUInt32LE(0x7fffffff, 0);
  fails([Buffer.concat([header(), huge])], /claims/);

  await assert.rejects(async () => {
    for await (const _ of parseSendStream(Readable.from([good.subarray(0, 50)]))) {
      /* drain */
    }
  }, SendStreamError);
});

const view = (cs: Candidate[]): Record<string, string> =>
  Object.fromEntries(
    cs.map((c) => [
      c.path.toString('latin1'),
      [c.maybeAdded && 'A', c.maybeDeleted && 'D', c.content && 'c', c.attrs && 'p', c.xattrs && 'x', c.newInode && 'n', c.listNew && 'L'].filter(Boolean).join(''),
    ]),
  );

const P = (s: string): string => s;

test('replay: a deleted tree emptied under orphan names comes out under its original paths', () => {
  const cands = replayCommands([
    { cmd: 'snapshot', path: P('s'), uuid: Buffer.alloc(16), ctransid: 1, cloneUuid: Buffer.alloc(16), cloneCtransid: 1 },
    { cmd: 'rename', path: P('usr/share/man'), to: P('o1055-7-0') },
    { cmd: 'rename', path: P('o1055-7-0/man5'), to: P('o1056-7-0') },
    { cmd: 'unlink', path: P('o1056-7-0/login.defs.5.gz') },
    { cmd: 'rmdir', path: P('o1056-7-0') },
    { cmd: 'unlink', path: P('o1055-7-0/man1/ls.1.gz') },
    { cmd: 'rmdir', path: P('o1055-7-0/man1') },
    { cmd: 'rmdir', path: P('o1055-7-0') },
    { cmd: 'end' },
  ]);
  assert.deepEqual(view(cands), {
    'usr/share/man': 'D',
    'usr/share/man/man5': 'D',
    'usr/share/man/man5/login.defs.5.gz': 'D',
    'usr/share/man/man1': 'D',
    'usr/share/man/man1/ls.1.gz': 'D',
  });
});

test('replay: new inodes, renames, link+unlink, and changes below a moved directory', () => {
  const cands = replayCommands([
    { cmd: 'snapshot', path: P('s'), uuid: Buffer.alloc(16), ctransid: 1, cloneUuid: Buffer.alloc(16), cloneCtransid: 1 },
    { cmd: 'link', path: P('etc/issue.net.renamed'), target: P('etc/issue.net') },
    { cmd: 'unlink', path: P('etc/issue.net') },
    { cmd: 'rename', path: P('usr/share/doc'), to: P('usr/share/doc-moved') },
    { cmd: 'update_extent', path: P('usr/share/doc-moved/x/y'), offset: 0, length: 3 },
    { cmd: 'mkfile', path: P('o7164-122-0'), ino: 7164 },
    { cmd: 'rename', path: P('o7164-122-0'), to: P('root/newfile.txt') },
    { cmd: 'chown', path: P('root/newfile.txt'), uid: 1000, gid: 1000 },
    { cmd: 'link', path: P('root/passwd.hardlink'), target: P('etc/passwd') },
    { cmd: 'set_xattr', path: P('etc/hostname'), name: b('user.box'), data: b('hello') },
    { cmd: 'chmod', path: P(''), mode: 0o700 },
    { cmd: 'utimes', path: P('etc/host.conf'), atime: { sec: 0, nsec: 0 }, mtime: { sec: 0, nsec: 0 }, ctime: { sec: 0, nsec: 0 } },
    { cmd: 'end' },
  ]);
  assert.deepEqual(view(cands), {
    'etc/issue.net.renamed': 'A',
    'etc/issue.net': 'D',
    'usr/share/doc': 'D',
    'usr/share/doc-moved': 'AD',
    'usr/share/doc/x/y': 'Dc',
    'usr/share/doc-moved/x/y': 'Ac',
    'root/newfile.txt': 'ADpn',
    'root/passwd.hardlink': 'A',
    'etc/hostname': 'x',
    '': 'p',
  });
});

test('replay: a rename over an existing name makes the replaced old entry a candidate', () => {
  const snap: SendCommand = { cmd: 'snapshot', path: P('s'), uuid: Buffer.alloc(16), ctransid: 1, cloneUuid: Buffer.alloc(16), cloneCtransid: 1 };
  const cands = replayCommands([
    snap,
    { cmd: 'rename', path: P('a/x'), to: P('b/y') },
    { cmd: 'mkdir', path: P('o9-1-0'), ino: 9 },
    { cmd: 'mkfile', path: P('o9-1-0/f'), ino: 10 },
    { cmd: 'rename', path: P('o9-1-0'), to: P('c') },
    { cmd: 'end' },
  ]);
  // b/y may have existed in the old tree; o9-1-0 cannot have (the kernel picks orphan
  // names that exist in neither tree); c/f was created inside a new directory.
  assert.deepEqual(view(cands), { 'a/x': 'D', 'b/y': 'AD', c: 'ADn', 'c/f': 'An' });
});

test('replay: past its limit, what the stream creates in a new directory is listed with it, and comes back when it leaves', () => {
  const snap: SendCommand = { cmd: 'snapshot', path: P('s'), uuid: Buffer.alloc(16), ctransid: 1, cloneUuid: Buffer.alloc(16), cloneCtransid: 1 };
  const commands: SendCommand[] = [
    snap,
    { cmd: 'mkdir', path: P('o9-1-0'), ino: 9 },
    { cmd: 'rename', path: P('o9-1-0'), to: P('d') },
    { cmd: 'mkfile', path: P('o10-1-0'), ino: 10 },
    { cmd: 'rename', path: P('o10-1-0'), to: P('d/f') },
    { cmd: 'chown', path: P('d/f'), uid: 1, gid: 1 },
    { cmd: 'mkfile', path: P('o11-1-0'), ino: 11 },
    { cmd: 'rename', path: P('o11-1-0'), to: P('d/g') },
    { cmd: 'link', path: P('d/h'), target: P('d/f') }, // a new name of a file let go
    { cmd: 'rename', path: P('d/g'), to: P('e/g') }, // leaves the new directory for an old one
    { cmd: 'rename', path: P('old/x'), to: P('d/x') }, // an old file moves in: only its old name counts
    { cmd: 'mkdir', path: P('o12-1-0'), ino: 12 },
    { cmd: 'rename', path: P('o12-1-0'), to: P('d/sub') }, // a new directory in a new directory
    { cmd: 'end' },
  ];
  assert.deepEqual(view(replayCommands(commands, { keepNew: 1 })), { d: 'ADnL', 'e/g': 'ADn', 'old/x': 'D' });
  // Below the limit, each new entry is a candidate of its own.
  assert.deepEqual(view(replayCommands(commands, { keepNew: 100 })), { d: 'ADn', 'd/f': 'Apn', 'd/h': 'Apn', 'd/sub': 'An', 'd/x': 'A', 'e/g': 'ADn', 'old/x': 'D' });
});

test('replay refuses streams it cannot interpret', () => {
  const snap: SendCommand = { cmd: 'snapshot', path: P('s'), uuid: Buffer.alloc(16), ctransid: 1, cloneUuid: Buffer.alloc(16), cloneCtransid: 1 };
  assert.throws(() => replayCommands([{ cmd: 'subvol', path: P('s'), uuid: Buffer.alloc(16), ctransid: 1 }]), /full stream/);
  assert.throws(() => replayCommands([snap, { cmd: 'unlink', path: P('a') }, { cmd: 'unlink', path: P('a') }]), /after removing/);
  assert.throws(() => replayCommands([snap, { cmd: 'mkfile', path: P('o5-1-0'), ino: 5 }, { cmd: 'unlink', path: P('o5-1-0/x') }]), /unknown entry/);
  assert.throws(() => replayCommands([snap, { cmd: 'rmdir', path: P('') }]), /root/);
});
