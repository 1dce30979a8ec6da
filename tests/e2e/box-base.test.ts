/**
 * The real thing, through the CLI: install box-base (Debian from the mirror), create a box,
 * snapshot it, `apt-get install` a small package inside, see its files in the diff, and
 * restore them away.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MAIN } from '../helpers/cli.js';
import { type TestPool, isRoot, makeTestPool } from '../helpers/pool.js';


describe('box-base end to end: apt-get in a box, diff, restore', { skip: !isRoot() && 'needs root for btrfs' }, () => {
  let pool: TestPool;
  let stateDir: string;
  let env: NodeJS.ProcessEnv;
  const zomg = (...args: string[]) => {
    const r = spawnSync(process.execPath, [MAIN, ...args], { env, encoding: 'utf8', timeout: 300_000 });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };

  before(() => {
    pool = makeTestPool(3072);
    stateDir = mkdtempSync(join(tmpdir(), 'zomg-boxbase-'));
    env = { ...process.env, ZOMG_HOME: stateDir, ZOMG_POOL_PATH: pool.mnt, ZOMG_PROJECT: 'e2e', ZOMG_NO_SIZE_WORKER: '1' };
    delete env.ZOMG_URL;
    delete env.ZOMG_API_URL;
    delete env.ZOMG_PROFILE;
  });
  after(() => {
    zomg('delete', 'deb');
    pool?.cleanup();
    if (stateDir) rmSync(stateDir, { recursive: true, force: true });
  });

  it('installs box-base once, then says it is up to date', () => {
    const first = zomg('base', 'install', 'box-base');
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /^Installed box-base \(alias box-base, tag [0-9a-f]{12}\)\n$/);
    const again = zomg('base', 'install', 'box-base');
    assert.match(again.stdout, /^box-base is up to date/);
    assert.match(zomg('base', 'inspect', 'box-base').stdout, /box-base\s+install\s+[0-9a-f]{64}\s+script\s+-/);
  });

  it('apt-get installs a package in a box; the diff shows its files; restore removes them', () => {
    assert.equal(zomg('create', 'deb').code, 0, 'box-base is the default base');
    assert.equal(zomg('exec', 'deb', '--', 'bash', '-c', 'test -n "$BOX_NAME" && command -v apt-get').code, 0);
    assert.equal(zomg('snapshot', 'create', 'deb', '-m', 'clean').stdout, 'Created snapshot v0 of e2e:deb\n');
    const install = zomg('exec', 'deb', '--', 'bash', '-c', 'apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends hello');
    assert.equal(install.code, 0, install.stdout + install.stderr);
    assert.equal(zomg('exec', 'deb', '--', 'hello').stdout, 'Hello, world!\n');
    const diff = zomg('diff', 'status', 'deb');
    assert.equal(diff.code, 0, diff.stderr);
    const lines = diff.stdout.trim().split('\n');
    assert.ok(lines.includes('+ /usr/bin/hello'), diff.stdout);
    assert.ok(lines.includes('+ /usr/share/doc/hello/copyright'), diff.stdout);
    assert.ok(lines.some((l) => l.startsWith('~ /var/lib/dpkg/status')), diff.stdout);
    assert.ok(lines.every((l) => /^[+~-] \//.test(l)));
    assert.equal(zomg('diff', 'file', 'deb', '/usr/bin/hello').stdout.split('\n')[0], '/usr/bin/hello: added');
    assert.equal(zomg('snapshot', 'restore', 'deb', 'v0').code, 0);
    assert.notEqual(zomg('exec', 'deb', '--', 'hello').code, 0);
    assert.equal(zomg('diff', 'status', 'deb').stdout, 'No changes\n');
  });
});
