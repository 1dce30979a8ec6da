/** The default profile's pure parts: the seccomp program (syscall numbers, layout, behaviour on x86_64 and aarch64), and the limits parser. */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import type { ZomgError } from '../../src/core/errors.js';
import { boxConfigFromJson, parseBoxConfig, parseCpus, parseMemory, parsePids, parsePublish } from '../../src/core/limits.js';
import { capMaskHex } from '../../src/runtime/profile.js';
import { AUDIT_ARCH, DENIED_SYSCALLS, SYSCALL_CLONE, SYSCALL_CLONE3, deniedSyscalls, seccompArch, seccompFilter } from '../../src/runtime/seccomp.js';

const code = (c: string) => (err: unknown) => (err as ZomgError).code === c;
const HEADER = '/usr/include/x86_64-linux-gnu/asm/unistd_64.h';
/** aarch64's table is the kernel's generic one (any Debian's linux-libc-dev ships it). */
const GENERIC_HEADER = '/usr/include/asm-generic/unistd.h';
const RET_ALLOW = 0x7fff0000;
const EPERM = 0x00050000 | 1;
const ENOSYS = 0x00050000 | 38;
const AUDIT_ARCH_I386 = 0x40000003;
const AUDIT_ARCH_ARM = 0x40000028;

/**
 * Runs a classic-BPF seccomp program the way the kernel does, on one `struct seccomp_data`
 * (nr, arch, and the low word of the first argument: all the filter reads).
 */
function runFilter(prog: Buffer, data: { nr: number; arch: number; arg0?: number }): number {
  const word = (off: number): number => {
    if (off === 0) return data.nr >>> 0;
    if (off === 4) return data.arch >>> 0;
    if (off === 16) return (data.arg0 ?? 0) >>> 0;
    throw new Error(`the filter reads seccomp_data at ${off}`);
  };
  let acc = 0;
  for (let pc = 0; pc < prog.length / 8; pc++) {
    const code = prog.readUInt16LE(pc * 8);
    const jt = prog.readUInt8(pc * 8 + 2);
    const jf = prog.readUInt8(pc * 8 + 3);
    const k = prog.readUInt32LE(pc * 8 + 4);
    if (code === 0x20) acc = word(k);
    else if (code === 0x06) return k;
    else if (code === 0x15) pc += acc === k ? jt : jf;
    else if (code === 0x35) pc += acc >= k ? jt : jf;
    else if (code === 0x45) pc += (acc & k) !== 0 ? jt : jf;
    else throw new Error(`unexpected opcode ${code.toString(16)} at ${pc}`);
  }
  throw new Error('the program ran off its end');
}

describe('seccomp filter', () => {
  it('uses the kernel\'s x86_64 numbers', { skip: !existsSync(HEADER) && 'no kernel headers' }, () => {
    const text = readFileSync(HEADER, 'utf8');
    const nr = (name: string): number => Number(new RegExp(`#define __NR_${name}\\s+(\\d+)`).exec(text)?.[1]);
    for (const [name, value] of Object.entries(DENIED_SYSCALLS)) assert.equal(value, nr(name), name);
    assert.deepEqual(deniedSyscalls('x64'), DENIED_SYSCALLS);
    assert.equal(SYSCALL_CLONE.x64, nr('clone'));
    assert.equal(SYSCALL_CLONE3.x64, nr('clone3'));
  });

  it('uses the kernel\'s aarch64 (generic) numbers, and leaves out the calls aarch64 lacks', { skip: !existsSync(GENERIC_HEADER) && 'no kernel headers' }, () => {
    const text = readFileSync(GENERIC_HEADER, 'utf8');
    const nr = (name: string): number | undefined => {
      const m = new RegExp(`#define __NR_${name}\\s+(\\d+)`).exec(text);
      return m ? Number(m[1]) : undefined;
    };
    const arm = deniedSyscalls('arm64');
    for (const name of Object.keys(DENIED_SYSCALLS)) assert.equal(arm[name], nr(name), name);
    // The legacy calls x86_64 still has and the generic table dropped.
    for (const gone of ['create_module', 'iopl', 'ioperm', '_sysctl', 'uselib', 'ustat', 'sysfs']) assert.equal(arm[gone], undefined, gone);
    assert.equal(arm.mount, 40);
    assert.equal(SYSCALL_CLONE.arm64, nr('clone'));
    assert.equal(SYSCALL_CLONE3.arm64, nr('clone3'));
  });

  for (const arch of ['x64', 'arm64'] as const) {
    it(`denies what it lists on ${arch}, allows the rest, and refuses every other architecture`, () => {
      const prog = seccompFilter(arch);
      const own = AUDIT_ARCH[arch];
      for (const [name, nr] of Object.entries(deniedSyscalls(arch))) assert.equal(runFilter(prog, { nr, arch: own }), EPERM, name);
      // read, openat, getpid, execve: everyday calls pass.
      const everyday = arch === 'x64' ? [0, 257, 39, 59] : [63, 56, 172, 221];
      for (const nr of everyday) assert.equal(runFilter(prog, { nr, arch: own }), RET_ALLOW, `syscall ${nr}`);
      // clone: a plain fork or thread passes, a new namespace does not; clone3 falls back.
      const clone = SYSCALL_CLONE[arch];
      assert.equal(runFilter(prog, { nr: clone, arch: own, arg0: 0x11 /* SIGCHLD */ }), RET_ALLOW);
      assert.equal(runFilter(prog, { nr: clone, arch: own, arg0: 0x003d0f00 /* pthread_create */ }), RET_ALLOW);
      for (const ns of [0x00020000, 0x10000000, 0x20000000, 0x40000000]) assert.equal(runFilter(prog, { nr: clone, arch: own, arg0: ns | 0x11 }), EPERM);
      assert.equal(runFilter(prog, { nr: SYSCALL_CLONE3[arch], arch: own }), ENOSYS);
      // The other architecture's numbers mean other calls: its whole ABI is refused, as are 32-bit compat calls.
      const other = arch === 'x64' ? AUDIT_ARCH.arm64 : AUDIT_ARCH.x64;
      for (const foreign of [other, AUDIT_ARCH_I386, AUDIT_ARCH_ARM]) {
        for (const nr of everyday) assert.equal(runFilter(prog, { nr, arch: foreign }), EPERM, `arch ${foreign.toString(16)}`);
      }
      // x32 calls on x86_64 share the audit arch and set bit 30 of the number.
      if (arch === 'x64') assert.equal(runFilter(prog, { nr: 0x40000000 | 0, arch: own }), EPERM);
    });
  }

  it('is a well-formed program: checks the arch first, ends in returns, jumps stay inside', () => {
    for (const arch of ['x64', 'arm64'] as const) {
      const buf = seccompFilter(arch);
      assert.equal(buf.length % 8, 0);
      const n = buf.length / 8;
      assert.equal(buf.readUInt16LE(0), 0x20); // ld [arch]
      assert.equal(buf.readUInt32LE(4), 4);
      assert.equal(buf.readUInt32LE(12), AUDIT_ARCH[arch]);
      for (let i = 0; i < n; i++) {
        const op = buf.readUInt16LE(i * 8);
        if ((op & 0x07) === 0x05) assert.ok(i + 1 + Math.max(buf.readUInt8(i * 8 + 2), buf.readUInt8(i * 8 + 3)) < n, `jump at ${i} leaves the program`);
      }
      assert.equal(buf.readUInt16LE((n - 1) * 8), 0x06);
      assert.equal(buf.readUInt32LE((n - 1) * 8 + 4), ENOSYS);
      assert.equal(buf.readUInt32LE((n - 2) * 8 + 4), EPERM);
    }
  });

  it('is built for this host, and a host it is not built for refuses the default profile with a clear error', () => {
    assert.equal(seccompArch('x64', 'LE'), 'x64');
    assert.equal(seccompArch('arm64', 'LE'), 'arm64');
    assert.deepEqual(seccompFilter(), seccompFilter(seccompArch()));
    for (const [arch, order] of [['riscv64', 'LE'], ['ppc64', 'BE'], ['ia32', 'LE'], ['arm', 'LE'], ['s390x', 'BE'], ['arm64', 'BE']] as const) {
      assert.throws(
        () => seccompArch(arch, order),
        (err: unknown) => {
          const e = err as ZomgError;
          return e.code === 'ZOMG_PROFILE_UNSUPPORTED' && e.message.includes(arch) && /x86_64 and aarch64/.test(e.message) && /--privileged/.test(e.hint ?? '');
        },
        arch,
      );
    }
  });

  it('keeps docker\'s capabilities but mknod', () => {
    assert.equal(capMaskHex(), 'a00425fb');
  });
});

describe('box limits', () => {
  it('parses sizes, cpus, pids and published ports', () => {
    assert.equal(parseMemory('512m'), 512 * 1024 ** 2);
    assert.equal(parseMemory('1.5G'), 1.5 * 1024 ** 3);
    assert.equal(parseMemory('64MiB'), 64 * 1024 ** 2);
    assert.equal(parseMemory(32 * 1024 ** 2), 32 * 1024 ** 2);
    assert.equal(parseCpus('0.5'), 0.5);
    assert.equal(parsePids('256'), 256);
    assert.deepEqual(parsePublish('8080:80'), { host_ip: '127.0.0.1', host_port: 8080, box_port: 80, protocol: 'tcp' });
    assert.deepEqual(parsePublish('0.0.0.0:5353:53/udp'), { host_ip: '0.0.0.0', host_port: 5353, box_port: 53, protocol: 'udp' });
  });

  it('refuses what cannot work, with stable codes', () => {
    for (const bad of ['1m', '12x', '', 'm', '-5m']) assert.throws(() => parseMemory(bad), code('ZOMG_INVALID_MEMORY'), bad);
    for (const bad of ['0', '-1', '0.001', 'two', '5000']) assert.throws(() => parseCpus(bad), code('ZOMG_INVALID_CPUS'), bad);
    for (const bad of ['0', '3', '1.5', 'x']) assert.throws(() => parsePids(bad), code('ZOMG_INVALID_PIDS'), bad);
    for (const bad of ['70000:80', '80', '8080:0', '8080:80/sctp', 'a:b', '999.1.1.1:80:80', '8080:80/tcp/x']) {
      assert.throws(() => parsePublish(bad), code('ZOMG_INVALID_PUBLISH'), bad);
    }
    assert.throws(() => parseBoxConfig({ publish: ['8080:80', '8080:81'] }), code('ZOMG_INVALID_PUBLISH'));
  });

  it('reads rows written before the config existed as the default profile', () => {
    assert.deepEqual(boxConfigFromJson('{}'), { privileged: false, cpus: null, memory_bytes: null, pids: null, publish: [] });
    assert.equal(boxConfigFromJson('{"privileged":true}').privileged, true);
  });
});
