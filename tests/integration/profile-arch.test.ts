/**
 * A host the seccomp filter is not built for (runtime/seccomp.ts: x86_64 and aarch64):
 * a default box is refused with a clear error and leaves nothing behind, never started
 * unfiltered; a privileged box (no filter to build) still runs. The host's architecture is
 * what `process.arch` says, so the test says "riscv64" for the length of the creates.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import type { ZomgError } from '../../src/core/errors.js';
import type { BoxName, ProjectName } from '../../src/core/names.js';
import { busyboxRootfsTar } from '../helpers/fixtures.js';
import { type TestEngine, makeTestEngine } from '../helpers/engine.js';
import { isRoot } from '../helpers/pool.js';

const ref = (name: string) => ({ project: 'arch' as ProjectName, name: name as BoxName });

/** Runs `fn` while this process reports `arch` as its architecture. */
async function asArch<T>(arch: string, fn: () => Promise<T>): Promise<T> {
  const real = Object.getOwnPropertyDescriptor(process, 'arch');
  Object.defineProperty(process, 'arch', { value: arch, configurable: true, enumerable: true });
  try {
    return await fn();
  } finally {
    if (real) Object.defineProperty(process, 'arch', real);
  }
}

describe('the default profile on a host the filter is not built for', { skip: !isRoot() && 'needs root for btrfs' }, () => {
  let t: TestEngine;

  before(async () => {
    t = await makeTestEngine();
    await t.engine.importBase('bb', busyboxRootfsTar());
  });

  after(async () => {
    await t?.cleanup();
  });

  it('refuses a default box with ZOMG_PROFILE_UNSUPPORTED and leaves no box, root or runtime state', async () => {
    const err = await asArch('riscv64', () => t.engine.createBox(ref('filtered'), { base: 'bb' })).then(
      () => assert.fail('a default box started without its seccomp filter'),
      (e: unknown) => e as ZomgError,
    );
    assert.equal(err.code, 'ZOMG_PROFILE_UNSUPPORTED');
    assert.match(err.message, /built for x86_64 and aarch64, not riscv64/);
    assert.match(err.hint ?? '', /--privileged/);
    assert.deepEqual(await t.engine.listBoxes({ project: 'arch' }), []);
    assert.deepEqual(readdirSync(join(t.pool.mnt, 'roots')), []);
    const runs = join(t.stateDir, 'run', 'boxes');
    assert.deepEqual(existsSync(runs) ? readdirSync(runs).filter((d) => readdirSync(join(runs, d)).length > 0) : [], []);
  });

  it('still runs a privileged box there (it has no filter to build)', async () => {
    await asArch('riscv64', () => t.engine.createBox(ref('root'), { base: 'bb', privileged: true }));
    let out = '';
    const sink = () => new Writable({ write: (c: Buffer, _e, cb) => ((out += c.toString()), cb()) });
    const { exit_code } = await t.engine.exec(ref('root'), { command: ['sh', '-c', 'grep Seccomp: /proc/self/status'] }, { stdout: sink(), stderr: sink() });
    assert.equal(exit_code, 0);
    assert.match(out, /Seccomp:\s+0/);
    await t.engine.deleteBox(ref('root'));
  });
});
