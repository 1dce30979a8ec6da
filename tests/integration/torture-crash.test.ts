/**
 * Crash torture: the built CLI is killed with SIGKILL at random points of each mutation
 * (import, snapshot create, restore, create, resume, delete, base save, base delete), and
 * after each kill the next command repairs what was left. Then: no orphan subvolume, no row
 * without its subvolume, no staging leftover, a restored root exactly old or new, no
 * process zomg cannot see, and at the end a pool that closes.
 *
 * Seeded (ZOMG_TORTURE_SEED) so a failure can be replayed; the suite runs a few kills per
 * mutation, `npm run torture` (ZOMG_TORTURE_FULL=1) at least 20 each.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { busyboxRootfsTar } from '../helpers/fixtures.js';
import { MAIN } from '../helpers/cli.js';
import { isRoot, killBoxesUnder } from '../helpers/pool.js';
import { FULL, SEED, poolProblems, seeded, untrackedProcesses } from '../helpers/torture.js';

const KILLS = FULL ? 20 : 3;

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

describe(`crash torture: SIGKILL at random points (seed ${SEED}, ${KILLS} kills per mutation)`, { skip: !isRoot() && 'needs root for btrfs' }, () => {
  let stateDir: string;
  let poolRoot: string;
  let env: NodeJS.ProcessEnv;
  const random = seeded(SEED);

  const zomg = (args: string[]): Result => {
    const r = spawnSync(process.execPath, [MAIN, ...args], { env, encoding: 'utf8', timeout: 120_000 });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  const ok = (args: string[]): string => {
    const r = zomg(args);
    assert.equal(r.code, 0, `zomg ${args.join(' ')}: ${r.stderr}${r.stdout}`);
    return r.stdout;
  };

  /** Runs `zomg args` and kills it after `delayMs` (or lets it finish first). Resolves with how long it ran. */
  const killAfter = async (args: string[], delayMs: number): Promise<{ killed: boolean; ms: number }> => {
    const started = Date.now();
    const child = spawn(process.execPath, [MAIN, ...args], { env, stdio: 'ignore' });
    const done = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const timer = sleep(delayMs).then(() => 'timeout' as const);
    const first = await Promise.race([done.then(() => 'exit' as const), timer]);
    if (first === 'timeout' && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await done;
      return { killed: true, ms: Date.now() - started };
    }
    return { killed: false, ms: Date.now() - started };
  };

  /** How long `args` takes when nothing kills it (the window random kills are drawn from). */
  const timeOf = (args: string[]): number => {
    const started = Date.now();
    ok(args);
    return Date.now() - started;
  };

  const boxes = (): Array<{ id: string; name: string; status: string }> => JSON.parse(ok(['list', '-a', '--json'])) as Array<{ id: string; name: string; status: string }>;

  /** The repair and every invariant, after one kill. */
  const check = (what: string): void => {
    // Any command repairs what a crash left (the CLI reconciles when there is evidence).
    const listed = boxes();
    const running = new Set(listed.filter((b) => b.status === 'running').map((b) => b.id));
    assert.deepEqual(poolProblems(stateDir, poolRoot), [], `${what}: pool and database disagree`);
    assert.deepEqual(untrackedProcesses(poolRoot, running), [], `${what}: processes zomg cannot see`);
  };

  const delayFor = (windowMs: number): number => Math.floor(windowMs * (0.05 + random() * 1.0));

  before(() => {
    stateDir = mkdtempSync(join(tmpdir(), 'zomg-torture-'));
    poolRoot = join(stateDir, 'pool');
    env = { ...process.env, ZOMG_HOME: stateDir, ZOMG_NO_SIZE_WORKER: '1' };
    for (const k of ['ZOMG_POOL_PATH', 'ZOMG_PROJECT', 'ZOMG_URL', 'ZOMG_API_URL', 'ZOMG_PROFILE']) delete env[k];
    env.ZOMG_PROJECT = 'torture';
    ok(['base', 'import', 'bb', '--file', busyboxRootfsTar()]);
  });

  after(() => {
    if (existsSync(poolRoot)) {
      killBoxesUnder(poolRoot);
      spawnSync('umount', ['-l', poolRoot]);
    }
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('base import', async () => {
    const window = timeOf(['base', 'import', 'imp', '--file', busyboxRootfsTar()]);
    for (let i = 0; i < KILLS; i++) {
      await killAfter(['base', 'import', 'imp', '--file', busyboxRootfsTar()], delayFor(window));
      check(`import kill ${i}`);
    }
  });

  it('create and resume', async () => {
    const window = timeOf(['create', 'c0', '--base', 'bb']);
    for (let i = 0; i < KILLS; i++) {
      await killAfter(['create', `c${i + 1}`, '--base', 'bb'], delayFor(window));
      check(`create kill ${i}`);
      const made = boxes().find((b) => b.name === `c${i + 1}`);
      if (made) {
        // The box is whole: it runs commands once resumed.
        ok(['stop', `c${i + 1}`]);
        await killAfter(['resume', `c${i + 1}`], delayFor(window));
        check(`resume kill ${i}`);
        ok(['resume', `c${i + 1}`]);
        assert.equal(zomg(['exec', `c${i + 1}`, '--', 'true']).code, 0);
        assert.equal(boxes().filter((b) => b.name === `c${i + 1}`).length, 1);
      }
    }
  });

  it('snapshot create: a snapshot is there with its row, or not at all', async () => {
    ok(['create', 'snap', '--base', 'bb']);
    const window = timeOf(['snapshot', 'create', 'snap']);
    for (let i = 0; i < KILLS; i++) {
      await killAfter(['snapshot', 'create', 'snap'], delayFor(window));
      check(`snapshot create kill ${i}`);
    }
    // Names keep going up after the kills: the next one is above every existing vN.
    const names = (JSON.parse(ok(['snapshot', 'list', 'snap', '--json'])) as Array<{ name: string }>).map((c) => c.name);
    const next = JSON.parse(ok(['snapshot', 'create', 'snap', '--json'])) as { name: string };
    assert.ok(!names.includes(next.name));
  });

  it('restore: the root is exactly the old one or the new one', async () => {
    ok(['create', 'rst', '--base', 'bb']);
    const id = boxes().find((b) => b.name === 'rst')?.id as string;
    const marker = join(poolRoot, 'roots', id, 'marker');
    writeFileSync(marker, 'old');
    ok(['snapshot', 'create', 'rst', 'before']);
    const window = timeOf(['snapshot', 'restore', 'rst', 'before']);
    for (let i = 0; i < KILLS; i++) {
      writeFileSync(join(poolRoot, 'roots', id, 'marker'), 'new');
      await killAfter(['snapshot', 'restore', 'rst', 'before'], delayFor(window));
      check(`restore kill ${i}`);
      const now = readFileSync(join(poolRoot, 'roots', id, 'marker'), 'utf8');
      assert.ok(now === 'old' || now === 'new', `restore kill ${i}: marker is ${now}`);
      assert.ok(existsSync(join(poolRoot, 'roots', id, 'bin', 'busybox')), `restore kill ${i}: the root is whole`);
    }
  });

  it('delete: a box is whole or gone', async () => {
    const window = timeOf(['delete', 'c0']);
    for (let i = 0; i < KILLS; i++) {
      ok(['create', `d${i}`, '--base', 'bb']);
      ok(['snapshot', 'create', `d${i}`]);
      await killAfter(['delete', `d${i}`], delayFor(window));
      check(`delete kill ${i}`);
    }
  });

  it('base save and base delete', async () => {
    ok(['create', 'saver', '--base', 'bb']);
    const saveWindow = timeOf(['base', 'save', 'saved', 'saver']);
    for (let i = 0; i < KILLS; i++) {
      await killAfter(['base', 'save', 'saved', 'saver'], delayFor(saveWindow));
      check(`base save kill ${i}`);
    }
    const versions = (JSON.parse(ok(['base', 'inspect', 'saved', '--json'])) as { versions: Array<{ name: string }>; latest_version: string }).versions
      .map((v) => v.name)
      .filter((n) => n !== (JSON.parse(ok(['base', 'inspect', 'saved', '--json'])) as { latest_version: string }).latest_version);
    const deleteWindow = 400;
    for (const [i, version] of versions.slice(0, KILLS).entries()) {
      await killAfter(['base', 'delete', '--version', version], delayFor(deleteWindow));
      check(`base delete kill ${i}`);
    }
  });

  it('leaves a pool that closes', () => {
    for (const b of boxes()) if (b.status === 'running') ok(['stop', `torture:${b.name}`]);
    const closed = zomg(['pool', 'close']);
    assert.equal(closed.code, 0, closed.stderr);
    assert.match(closed.stdout, /Unmounted/);
  });
});
