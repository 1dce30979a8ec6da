/**
 * A configured pool (ZOMG_POOL_PATH) belongs to one state directory. The reconciler deletes a
 * subvolume that has no row in the state's database (a crash's leftover), so a second state
 * directory opened on the same pool — `zomg serve` reconciles at every start — deleted every
 * box of the first. The pool names its state directory in `.zomg-owner`; another one refuses
 * it (ZOMG_POOL_OWNED), locally and as a server, and nothing of the first is touched.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MAIN } from '../helpers/cli.js';
import { busyboxRootfsTar } from '../helpers/fixtures.js';
import { type TestPool, isRoot, makeTestPool } from '../helpers/pool.js';

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

describe('a configured pool belongs to one state directory', { skip: !isRoot() && 'needs root for btrfs' }, () => {
  let pool: TestPool;
  const stateDirs: string[] = [];
  const newState = (): string => {
    const dir = mkdtempSync(join(tmpdir(), 'zomg-owner-'));
    stateDirs.push(dir);
    return dir;
  };
  let first = '';

  const zomg = (stateDir: string, args: string[]): Result => {
    const env: NodeJS.ProcessEnv = { ...process.env, ZOMG_HOME: stateDir, ZOMG_POOL_PATH: pool.mnt, ZOMG_NO_SIZE_WORKER: '1', ZOMG_PROJECT: 'own' };
    for (const key of ['ZOMG_URL', 'ZOMG_API_URL', 'ZOMG_PROFILE', 'ZOMG_TOKEN']) delete env[key];
    const r = spawnSync(process.execPath, [MAIN, ...args], { env, encoding: 'utf8', timeout: 120_000 });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  const boxes = (stateDir: string): string => zomg(stateDir, ['list', '-q']).stdout;

  before(() => {
    pool = makeTestPool(512);
    first = newState();
    const imported = zomg(first, ['base', 'import', 'bb', '--file', busyboxRootfsTar()]);
    assert.equal(imported.code, 0, imported.stderr);
    const created = zomg(first, ['create', 'keep', '--base', 'bb']);
    assert.equal(created.code, 0, created.stderr);
    assert.equal(zomg(first, ['snapshot', 'create', 'keep']).code, 0);
  });

  after(() => {
    zomg(first, ['stop', '--all']);
    pool?.cleanup();
    for (const dir of stateDirs) rmSync(dir, { recursive: true, force: true });
  });

  it('names its state directory, and another state directory refuses it without touching it', () => {
    const id = readFileSync(join(first, 'state-id'), 'utf8').trim();
    assert.match(id, /^[0-9a-f]{32}$/);
    assert.equal(readFileSync(join(pool.mnt, '.zomg-owner'), 'utf8').trim(), id);
    const other = newState();
    for (const args of [['list'], ['create', 'x', '--base', 'bb'], ['--json', 'list']]) {
      const r = zomg(other, args);
      assert.equal(r.code, 1, `${args.join(' ')}: ${r.stderr}${r.stdout}`);
      if (args[0] === '--json') assert.equal((JSON.parse(r.stdout) as { error: { code: string } }).error.code, 'ZOMG_POOL_OWNED');
      else assert.match(r.stderr, /^error: the pool at .* belongs to another zomg state directory .*\nhint: use the state directory it belongs to/);
    }
    // A server reconciles at its start: it must refuse before that.
    const served = spawnSync(process.execPath, [MAIN, 'serve', '--listen', '127.0.0.1:0'], {
      env: { ...process.env, ZOMG_HOME: other, ZOMG_POOL_PATH: pool.mnt, ZOMG_NO_SIZE_WORKER: '1' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(served.status, 1, served.stderr);
    assert.match(served.stderr, /belongs to another zomg state directory/);
    assert.equal(boxes(first), 'keep\n', 'the first state directory keeps its box');
    assert.equal(JSON.parse(zomg(first, ['snapshot', 'list', 'keep', '--json']).stdout).length, 1);
  });

  it('is claimed from before owner files by the state directory that used it, not by another one', () => {
    rmSync(join(pool.mnt, '.zomg-owner'));
    // A new state directory, and one in use with a pool of its own, and a base of the same name
    // (a base version's name proves nothing: `debian` is every state directory's that has one).
    const other = newState();
    const elsewhere = makeTestPool(256);
    try {
      const env = { ...process.env, ZOMG_HOME: other, ZOMG_POOL_PATH: elsewhere.mnt, ZOMG_NO_SIZE_WORKER: '1' };
      assert.equal(spawnSync(process.execPath, [MAIN, 'base', 'import', 'bb', '--file', busyboxRootfsTar()], { env, encoding: 'utf8', timeout: 120_000 }).status, 0);
    } finally {
      elsewhere.cleanup();
    }
    for (const dir of [newState(), other]) {
      const refused = zomg(dir, ['list']);
      assert.equal(refused.code, 1, refused.stderr);
      assert.match(refused.stderr, /holds boxes, bases or volumes this state directory does not know/);
    }
    assert.equal(existsSync(join(pool.mnt, '.zomg-owner')), false);
    // Its own state directory (its database exists) takes it back.
    assert.equal(boxes(first), 'keep\n');
    assert.equal(readFileSync(join(pool.mnt, '.zomg-owner'), 'utf8').trim(), readFileSync(join(first, 'state-id'), 'utf8').trim());
  });

  it('lets a new state directory claim an empty pool', () => {
    const empty = makeTestPool(256);
    const dir = newState();
    try {
      const env = { ...process.env, ZOMG_HOME: dir, ZOMG_POOL_PATH: empty.mnt, ZOMG_NO_SIZE_WORKER: '1' };
      const r = spawnSync(process.execPath, [MAIN, 'list'], { env, encoding: 'utf8', timeout: 60_000 });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(readFileSync(join(empty.mnt, '.zomg-owner'), 'utf8').trim(), readFileSync(join(dir, 'state-id'), 'utf8').trim());
    } finally {
      empty.cleanup();
    }
  });
});
