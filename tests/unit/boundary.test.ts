/** The default profile's pure parts: the seccomp program's syscall numbers and layout, and the limits parser. */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import type { ZomgError } from '../../src/core/errors.js';
import { boxConfigFromJson, parseBoxConfig, parseCpus, parseMemory, parsePids, parsePublish } from '../../src/core/limits.js';
import { capMaskHex } from '../../src/runtime/profile.js';
import { DENIED_SYSCALLS, SYSCALL_CLONE, SYSCALL_CLONE3, seccompFilter } from '../../src/runtime/seccomp.js';

const code = (c: string) => (err: unknown) => (err as ZomgError).code === c;
const HEADER = '/usr/include/x86_64-linux-gnu/asm/unistd_64.h';

describe('seccomp filter', () => {
  it('uses the kernel\'s x86_64 numbers', { skip: !existsSync(HEADER) && 'no kernel headers' }, () => {
    const text = readFileSync(HEADER, 'utf8');
    const nr = (name: string): number => Number(new RegExp(`#define __NR_${name}\\s+(\\d+)`).exec(text)?.[1]);
    for (const [name, value] of Object.entries(DENIED_SYSCALLS)) assert.equal(value, nr(name), name);
    assert.equal(SYSCALL_CLONE, nr('clone'));
    assert.equal(SYSCALL_CLONE3, nr('clone3'));
  });

  it('is a well-formed program: checks the arch first, ends in returns, jumps stay inside', () => {
    const buf = seccompFilter();
    assert.equal(buf.length % 8, 0);
    const n = buf.length / 8;
    assert.equal(buf.readUInt16LE(0), 0x20); // ld [arch]
    assert.equal(buf.readUInt32LE(4), 4);
    assert.equal(buf.readUInt32LE(12), 0xc000003e);
    for (let i = 0; i < n; i++) {
      const op = buf.readUInt16LE(i * 8);
      if ((op & 0x07) === 0x05) assert.ok(i + 1 + Math.max(buf.readUInt8(i * 8 + 2), buf.readUInt8(i * 8 + 3)) < n, `jump at ${i} leaves the program`);
    }
    assert.equal(buf.readUInt16LE((n - 1) * 8), 0x06);
    assert.equal(buf.readUInt32LE((n - 1) * 8 + 4), 0x00050000 | 38); // ENOSYS
    assert.equal(buf.readUInt32LE((n - 2) * 8 + 4), 0x00050000 | 1); // EPERM
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
