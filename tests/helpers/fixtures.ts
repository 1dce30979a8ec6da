/**
 * Test fixtures for rootfs import. Real archives (a busybox rootfs, special entries with
 * owners, xattrs and device nodes) are built by tests/fixtures/make-fixtures.sh once per
 * machine and cached under /var/tmp/zomg-test-fixtures/<hash of the scripts>/. Hostile
 * archives are written header by header here, so each one is exactly the attack it names.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Where built fixtures are cached; ZOMG_TEST_FIXTURES_CACHE points elsewhere (e.g. an empty directory, to run cold). */
const FIXTURES_CACHE = process.env.ZOMG_TEST_FIXTURES_CACHE ?? '/var/tmp/zomg-test-fixtures';
const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const script = join(repoRoot, 'tests/fixtures/make-fixtures.sh');

let built: string | undefined;

/**
 * Runs `script` (bash, given an empty output directory) once per content of `inputs`
 * (the script and what it reads), caching its output under FIXTURES_CACHE; returns the
 * directory. A concurrent test process that finishes first wins; its copy is as good.
 */
export function cachedScriptOutput(script: string, inputs: string[], timeoutMs?: number): string {
  const hash = createHash('sha256');
  for (const f of [script, ...inputs]) hash.update(readFileSync(f));
  const dir = join(FIXTURES_CACHE, hash.digest('hex').slice(0, 16));
  if (!existsSync(join(dir, 'done'))) {
    mkdirSync(FIXTURES_CACHE, { recursive: true });
    const tmp = `${dir}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp);
    try {
      execFileSync('bash', [script, tmp], { stdio: ['ignore', 'ignore', 'pipe'], ...(timeoutMs !== undefined ? { timeout: timeoutMs } : {}) });
      writeFileSync(join(tmp, 'done'), '');
      try {
        renameSync(tmp, dir);
      } catch {
        if (!existsSync(join(dir, 'done'))) throw new Error(`could not install the output of ${script} into ${dir}`);
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  return dir;
}

/** The directory holding the script-built fixtures, building them on first use. */
function fixturesDir(): string {
  built ??= cachedScriptOutput(script, [join(repoRoot, 'bases/busybox/build.sh')]);
  return built;
}

export type Compression = 'tar' | 'gz' | 'zst' | 'xz';
const suffix = (c: Compression): string => (c === 'tar' ? '' : `.${c}`);

/** The busybox base (bases/busybox/build.sh) as a rootfs tarball. */
export function busyboxRootfsTar(compression: Compression = 'tar'): string {
  return join(fixturesDir(), `busybox-rootfs.tar${suffix(compression)}`);
}

/**
 * Every kind of entry an import must keep: bin/suid (1234:5678, 4755), bin/ping
 * (security.capability = cap_net_raw+ep), xattr-file (user.foo=bar), hard-a/hard-b (one
 * inode), sym -> hard-a (mtime 2000-01-01), dev/null (char 1:3), dev/loopx (block 7:200),
 * fifo, private/ (0700, 42:42).
 */
export function specialTar(compression: Compression = 'tar'): string {
  return join(fixturesDir(), `special.tar${suffix(compression)}`);
}

/** A rootfs whose bin/sh -> busybox is an aarch64 ELF. */
export const arm64RootfsTar = (): string => join(fixturesDir(), 'arm64-rootfs.tar');
/** A rootfs whose bin/sh is a script and that holds no ELF file. */
export const noElfRootfsTar = (): string => join(fixturesDir(), 'noelf-rootfs.tar');
/** The busybox .tar.zst cut in half. */
export const truncatedZst = (): string => join(fixturesDir(), 'truncated.tar.zst');
/** A text file. */
export const notATar = (): string => join(fixturesDir(), 'not-a-tar.tar');

// ---------------------------------------------------------------------------------------
// A minimal tar writer for hand-made archives.

export interface TarEntry {
  name: string;
  /** '0' file (default), '1' hardlink, '2' symlink, '5' directory, or a raw record type. */
  type?: string;
  linkname?: string;
  data?: string | Buffer;
  mode?: number;
  /** Written into the size field instead of the data length (to craft lies). */
  sizeField?: number;
  /** Pax records emitted in an 'x' header before this entry. */
  pax?: Record<string, string>;
  /** A GNU 'L' long-name record before this entry. */
  gnuLongName?: string;
  /** Corrupts the header checksum. */
  badChecksum?: boolean;
}

function octal(n: number, width: number): string {
  return n.toString(8).padStart(width - 1, '0') + '\0';
}

function header(e: { name: string; type: string; linkname?: string; size: number; mode: number; gnu?: boolean }, badChecksum = false): Buffer {
  const h = Buffer.alloc(512);
  if (Buffer.byteLength(e.name) > 100 || Buffer.byteLength(e.linkname ?? '') > 100) throw new Error(`tarBuffer: "${e.name}" needs a long-name record`);
  h.write(e.name, 0, 100, 'utf8');
  h.write(octal(e.mode, 8), 100, 'latin1');
  h.write(octal(0, 8), 108, 'latin1');
  h.write(octal(0, 8), 116, 'latin1');
  h.write(octal(e.size, 12), 124, 'latin1');
  h.write(octal(946684800, 12), 136, 'latin1');
  h.write(e.type, 156, 1, 'latin1');
  if (e.linkname) h.write(e.linkname, 157, 100, 'utf8');
  if (e.gnu) h.write('ustar  \0', 257, 'latin1');
  else h.write('ustar\x0000', 257, 'latin1');
  h.write('        ', 148, 'latin1');
  let sum = 0;
  for (const b of h) sum += b;
  if (badChecksum) sum += 1;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  return h;
}

function pad(data: Buffer): Buffer {
  const rest = data.length % 512;
  return rest === 0 ? data : Buffer.concat([data, Buffer.alloc(512 - rest)]);
}

export function paxRecords(records: Record<string, string>): Buffer {
  let out = '';
  for (const [k, v] of Object.entries(records)) {
    const body = ` ${k}=${v}\n`;
    let len = Buffer.byteLength(body) + 1;
    while (String(len).length + Buffer.byteLength(body) !== len) len = String(len).length + Buffer.byteLength(body);
    out += `${len}${body}`;
  }
  return Buffer.from(out);
}

/** Serialises `entries` as a tar archive, ending with two zero blocks unless `end` is false. */
export function tarBuffer(entries: TarEntry[], opts: { end?: boolean } = {}): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const data = typeof e.data === 'string' ? Buffer.from(e.data) : (e.data ?? Buffer.alloc(0));
    if (e.pax) {
      const body = paxRecords(e.pax);
      parts.push(header({ name: 'PaxHeaders/x', type: 'x', size: body.length, mode: 0o644 }), pad(body));
    }
    if (e.gnuLongName !== undefined) {
      const body = Buffer.from(`${e.gnuLongName}\0`);
      parts.push(header({ name: '././@LongLink', type: 'L', size: body.length, mode: 0o644, gnu: true }), pad(body));
    }
    const type = e.type ?? '0';
    parts.push(header({ name: e.name, type, linkname: e.linkname, size: e.sizeField ?? data.length, mode: e.mode ?? (type === '5' ? 0o755 : 0o644) }, e.badChecksum));
    if (data.length > 0) parts.push(pad(data));
  }
  if (opts.end !== false) parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

export interface HostileCase {
  name: string;
  archive: Buffer;
  /** True when the attack needs a parent with the symlinks from `parentSymlinks`. */
  onParent?: boolean;
}

/**
 * Archives that must be refused with ZOMG_UNSAFE_ARCHIVE. `outside` is an absolute host
 * directory outside the extraction root (a canary: it must stay empty); `depth` is how many
 * `..` steps lead from the root to `/`.
 */
export function hostileArchives(outside: string): HostileCase[] {
  const ok: TarEntry[] = [{ name: './', type: '5' }, { name: './etc/', type: '5' }, { name: './etc/ok', data: 'fine\n' }];
  const up = '../../../../../../../../../..';
  return [
    { name: 'dot-dot member', archive: tarBuffer([...ok, { name: `../${up}${outside}/dotdot`, data: 'x' }]) },
    { name: 'dot-dot in the middle', archive: tarBuffer([...ok, { name: `etc/../../pwned`, data: 'x' }]) },
    { name: 'absolute member', archive: tarBuffer([...ok, { name: `${outside}/absolute`, data: 'x' }]) },
    {
      name: 'symlink then write through it (absolute)',
      archive: tarBuffer([...ok, { name: 'evil', type: '2', linkname: outside }, { name: 'evil/pwned', data: 'x' }]),
    },
    {
      name: 'symlink then write through it (relative)',
      archive: tarBuffer([...ok, { name: 'etc/evil', type: '2', linkname: `${up}${outside}` }, { name: 'etc/evil/pwned', data: 'x' }]),
    },
    {
      name: 'symlink then a directory then a file through it',
      archive: tarBuffer([...ok, { name: 'evil', type: '2', linkname: outside }, { name: 'evil/', type: '5' }, { name: 'evil/pwned', data: 'x' }]),
    },
    {
      name: 'symlink chain',
      archive: tarBuffer([...ok, { name: 'a', type: '2', linkname: 'b' }, { name: 'b', type: '2', linkname: outside }, { name: 'a/pwned', data: 'x' }]),
    },
    { name: 'hardlink to an absolute path', archive: tarBuffer([...ok, { name: 'etc/shadow-copy', type: '1', linkname: '/etc/shadow' }]) },
    { name: 'hardlink with dot-dot', archive: tarBuffer([...ok, { name: 'etc/h', type: '1', linkname: `${up}/etc/shadow` }]) },
    {
      name: 'hardlink through a symlink',
      archive: tarBuffer([...ok, { name: 'evil', type: '2', linkname: '/etc' }, { name: 'etc/h', type: '1', linkname: 'evil/shadow' }]),
    },
    { name: 'pax path with dot-dot', archive: tarBuffer([...ok, { name: 'innocent', data: 'x', pax: { path: `${up}${outside}/pax` } }]) },
    { name: 'pax linkpath of a hardlink', archive: tarBuffer([...ok, { name: 'etc/h', type: '1', linkname: 'etc/ok', pax: { linkpath: '/etc/shadow' } }]) },
    {
      name: 'pax global header path with dot-dot',
      archive: tarBuffer([...ok, { name: 'pax_global_header', type: 'g', data: paxRecords({ path: `${up}${outside}/global` }) }, { name: 'innocent', data: 'x' }]),
    },
    { name: 'GNU long name with dot-dot', archive: tarBuffer([...ok, { name: 'innocent', data: 'x', gnuLongName: `${up}${outside}/${'long'.repeat(30)}` }]) },
    { name: 'symlink in place of the root', archive: tarBuffer([{ name: './', type: '2', linkname: outside }]) },
    { name: 'parent: through an absolute symlink in dest', archive: tarBuffer([...ok, { name: 'abs-link/pwned', data: 'x' }]), onParent: true },
    { name: 'parent: through a relative symlink leaving the root', archive: tarBuffer([...ok, { name: 'up-link/pwned', data: 'x' }]), onParent: true },
    {
      name: 'parent: through a safe dest link that now leads to an archive symlink',
      archive: tarBuffer([...ok, { name: 'usr/lib', type: '2', linkname: outside }, { name: 'lib/pwned', data: 'x' }]),
      onParent: true,
    },
  ];
}

/**
 * The symlinks the parent-based hostile cases expect in `dest`: `abs-link` -> `outside`,
 * `up-link` -> a relative path out of the root, `lib` -> `usr/lib` (safe).
 */
export function parentSymlinks(outside: string): Array<{ path: string; target: string }> {
  return [
    { path: 'abs-link', target: outside },
    { path: 'up-link', target: `../../../../../../../../../..${outside}` },
    { path: 'lib', target: 'usr/lib' },
  ];
}

// ---------------------------------------------------------------------------------------
// Deterministic archives for the error tests: the same bytes on every machine and every run,
// so a corruption at a given offset always hits the same place.

/** A small seeded PRNG (an LCG): the same sequence in [0, 1) for the same seed. */
export function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return (s >>> 8) / (1 << 24);
  };
}

/**
 * A tar archive of `files` text files (20–40 kB each, words drawn from `seed`), written
 * header by header with fixed mtimes: it compresses well, and gzip, zstd and xz turn it into
 * streams of several blocks, so a corruption can land anywhere.
 */
export function textTar(seed: number, files = 24): Buffer {
  const rnd = seeded(seed);
  const words = ['root:x:0:0:root:/root:/bin/sh', 'usr', 'lib', 'bin', 'etc', 'zomg', 'box', '\n', 'alpha', 'beta', 'gamma', '0123456789'];
  const entries: TarEntry[] = [{ name: './', type: '5' }, { name: './etc/', type: '5' }];
  for (let i = 0; i < files; i++) {
    const want = 20_000 + Math.floor(rnd() * 20_000);
    const parts: string[] = [];
    let len = 0;
    while (len < want) {
      const w = words[Math.floor(rnd() * words.length)] ?? '';
      parts.push(w);
      len += w.length + 1;
    }
    entries.push({ name: `./etc/file-${i}`, data: parts.join(' ') });
  }
  return tarBuffer(entries);
}

/** `data` compressed with the real tool (gzip -n, zstd --check, xz), single-threaded for the same bytes every time. */
export function compress(data: Buffer, kind: Exclude<Compression, 'tar'>): Buffer {
  const [cmd, args] = kind === 'gz' ? ['gzip', ['-n', '-c']] : kind === 'zst' ? ['zstd', ['-q', '-c', '--check', '-T1']] : ['xz', ['-c', '-T1']];
  return execFileSync(cmd, args, { input: data, maxBuffer: 1 << 30 });
}

/**
 * A compression bomb: one member of `bytes` bytes of the same letter, as concatenated
 * gzip members, zstd frames or xz streams (each decompressor reads them as one stream),
 * so a few hundred kB expand to any size without compressing that size here.
 */
export function compressedBomb(kind: Exclude<Compression, 'tar'>, bytes: number): Buffer {
  const mb = 1 << 20;
  if (bytes % mb !== 0) throw new Error('compressedBomb: bytes must be a whole number of MiB');
  const head = compress(tarBuffer([{ name: 'bomb', sizeField: bytes }], { end: false }), kind);
  const body = compress(Buffer.alloc(mb, 0x61), kind);
  const tail = compress(Buffer.alloc(1024), kind);
  return Buffer.concat([head, ...Array.from({ length: bytes / mb }, () => body), tail]);
}
