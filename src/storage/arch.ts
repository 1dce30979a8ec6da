/**
 * Architecture check of an imported rootfs: zomg runs boxes natively, so a base must hold
 * x86-64 binaries. The verdict comes from the ELF header of well-known programs.
 */
import { closeSync, constants, lstatSync, openSync, readSync, readdirSync } from 'node:fs';
import { UnprocessableError, ZomgError } from '../core/errors.js';
import { isErrno } from '../system/fs.js';
import { resolveInRoot } from '../system/rootpath.js';

/** Checked first, in this order: what `zomg exec` runs and what every userland has. */
const WELL_KNOWN = ['bin/sh', 'bin/busybox', 'usr/bin/env', 'bin/bash', 'sbin/init', 'usr/bin/ls', 'bin/ls'];
/** Then the first few entries of these directories. */
const SCANNED_DIRS = ['usr/bin', 'bin', 'usr/sbin', 'sbin'];
const SCAN_PER_DIR = 16;

const EM_X86_64 = 0x3e;

/** e_machine values a rootfs is likely to be built for. */
function machineName(machine: number, is64: boolean): string {
  switch (machine) {
    case 0x03: return 'i386';
    case 0x08: return is64 ? 'mips64' : 'mips';
    case 0x14: return 'ppc';
    case 0x15: return is64 ? 'ppc64' : 'ppc';
    case 0x16: return is64 ? 's390x' : 's390';
    case 0x28: return 'arm';
    case 0x2b: return 'sparc64';
    case 0x3e: return is64 ? 'x86-64' : 'x32';
    case 0xb7: return 'aarch64';
    case 0xf3: return is64 ? 'riscv64' : 'riscv32';
    case 0x102: return 'loongarch64';
    default: return `an unknown architecture (ELF machine 0x${machine.toString(16)})`;
  }
}

interface ElfInfo {
  path: string;
  machine: number;
  is64: boolean;
}

/** The host path of `rel` inside `root` (symlinks resolved as a chroot would), or null when missing or looping. */
function hostPathOf(root: string, rel: string): string | null {
  try {
    const resolved = resolveInRoot(root, rel);
    return resolved.stat === undefined ? null : resolved.hostPath;
  } catch (err) {
    if (err instanceof ZomgError && err.code === 'ZOMG_SYMLINK_LOOP') return null;
    throw err;
  }
}

/** The ELF identity of a regular file, or null when it is not an ELF file. */
function readElf(host: string, path: string): ElfInfo | null {
  let fd: number;
  try {
    // O_NOFOLLOW: hostPathOf already followed the links; O_NONBLOCK: never hang on a fifo.
    if (!lstatSync(host).isFile()) return null;
    fd = openSync(host, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR', 'ELOOP', 'EACCES', 'ENXIO')) return null;
    throw err;
  }
  try {
    const h = Buffer.alloc(20);
    if (readSync(fd, h, 0, 20, 0) < 20) return null;
    if (h.readUInt32BE(0) !== 0x7f454c46) return null;
    const is64 = h[4] === 2;
    const machine = h[5] === 2 ? h.readUInt16BE(18) : h.readUInt16LE(18);
    return { path, machine, is64 };
  } finally {
    closeSync(fd);
  }
}

function* candidates(root: string): Generator<string> {
  yield* WELL_KNOWN;
  for (const dir of SCANNED_DIRS) {
    const host = hostPathOf(root, dir);
    if (host === null) continue;
    let names: string[];
    try {
      names = readdirSync(host).sort().slice(0, SCAN_PER_DIR);
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR')) continue;
      throw err;
    }
    for (const n of names) yield `${dir}/${n}`;
  }
}

/**
 * Verifies that the rootfs at `root` is built for x86-64: the first ELF binary found among
 * well-known programs (bin/sh first) decides. Symlinks are resolved inside `root`.
 * Throws UnprocessableError ZOMG_WRONG_ARCH when that binary is for another machine, or
 * when no ELF binary is found at all.
 */
export async function verifyArchitecture(root: string): Promise<void> {
  const seen = new Set<string>();
  for (const rel of candidates(root)) {
    const host = hostPathOf(root, rel);
    if (host === null || seen.has(host)) continue;
    seen.add(host);
    const elf = readElf(host, rel);
    if (elf === null) continue;
    if (elf.machine === EM_X86_64 && elf.is64) return;
    const arch = machineName(elf.machine, elf.is64);
    throw new UnprocessableError('ZOMG_WRONG_ARCH', `the rootfs is built for ${arch}, zomg needs x86-64 (/${elf.path} is an ELF binary for ${arch})`, {
      hint: 'import or build an amd64 (x86-64) root filesystem',
    });
  }
  throw new UnprocessableError('ZOMG_WRONG_ARCH', 'no x86-64 ELF binaries were found in the rootfs (looked for /bin/sh, /usr/bin/env, /bin/busybox and others), zomg needs an x86-64 userland', {
    hint: 'a base needs at least /bin/sh built for x86-64',
  });
}
