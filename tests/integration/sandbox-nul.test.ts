/**
 * The sandbox's own guard: bwrap reads its arguments NUL-separated, so an argument holding a
 * NUL (here an environment value shaped to add a host bind mount) must stop the start before
 * bwrap runs, whatever the layers above let through.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { boxStatus, startBox, stopBox, type BoxSpec } from '../../src/runtime/sandbox.js';
import { busyboxRootfsTar } from '../helpers/fixtures.js';
import { isRoot, makeTestPool, type TestPool } from '../helpers/pool.js';

describe('sandbox: no argument may carry a NUL', { skip: !isRoot() && 'needs root' }, () => {
  let pool: TestPool;
  let spec: BoxSpec;

  before(() => {
    pool = makeTestPool(512);
    const root = join(pool.mnt, 'nul');
    execFileSync('btrfs', ['subvolume', 'create', root], { stdio: 'ignore' });
    execFileSync('tar', ['--numeric-owner', '-xpf', busyboxRootfsTar(), '-C', root]);
    const hostDir = join(pool.dir, 'host-secret');
    mkdirSync(hostDir);
    spec = {
      id: 'id-nul',
      root,
      hostname: 'nul.proj',
      env: { PATH: '/bin', A: `x\u0000--ro-bind\u0000${hostDir}\u0000/injected` },
      volumes: [],
      runDir: join(pool.dir, 'run/boxes/id-nul'),
    };
  });
  after(async () => {
    try {
      await stopBox(spec.runDir);
    } finally {
      pool.cleanup();
    }
  });

  it('refuses to start, and no box runs', async () => {
    await assert.rejects(startBox(spec), /NUL/);
    assert.equal(await boxStatus(spec.runDir, spec.root), 'stopped');
    assert.equal(existsSync(join(spec.root, 'injected')), false);
  });
});
