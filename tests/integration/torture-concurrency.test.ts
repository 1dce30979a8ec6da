/**
 * Concurrency torture: CLI processes and API clients create, list, restore and delete
 * snapshots on shared and separate boxes for a bounded time, with the background size
 * worker on. Afterwards every snapshot reported created (and not deleted) still exists,
 * names were never handed out twice while their snapshot existed, and no request got a 500.
 * Also: a loop of snapshot creates lists every one of them.
 *
 * The suite runs it briefly; `npm run torture` (ZOMG_TORTURE_FULL=1) for 120 s.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { busyboxRootfsTar } from '../helpers/fixtures.js';
import { MAIN, type Served, startServe } from '../helpers/cli.js';
import { type TestPool, isRoot, makeTestPool } from '../helpers/pool.js';
import { FULL, SEED, poolProblems, seeded } from '../helpers/torture.js';

const DURATION_MS = FULL ? 120_000 : 12_000;
const LOOP = FULL ? 80 : 20;

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

describe(`concurrency torture (seed ${SEED}, ${DURATION_MS / 1000} s)`, { skip: !isRoot() && 'needs root for btrfs' }, () => {
  let pool: TestPool;
  let stateDir: string;
  let env: NodeJS.ProcessEnv;
  let server: Served | undefined;
  let token = '';

  const zomgSync = (args: string[], extra: NodeJS.ProcessEnv = {}): Result => {
    const r = spawnSync(process.execPath, [MAIN, ...args], { env: { ...env, ...extra }, encoding: 'utf8', timeout: 120_000 });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  const zomg = (args: string[]): Promise<Result> =>
    new Promise((resolve) => {
      const child = spawn(process.execPath, [MAIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      child.on('close', (code) => resolve({ code, stdout, stderr }));
    });
  const api = async (method: string, path: string, body?: unknown): Promise<{ status: number; data: unknown }> => {
    const res = await fetch(`${server?.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, data: text ? (JSON.parse(text) as unknown) : undefined };
  };

  before(async () => {
    pool = makeTestPool(2048);
    stateDir = mkdtempSync(join(tmpdir(), 'zomg-conc-'));
    env = { ...process.env, ZOMG_HOME: stateDir, ZOMG_POOL_PATH: pool.mnt };
    for (const k of ['ZOMG_NO_SIZE_WORKER', 'ZOMG_URL', 'ZOMG_API_URL', 'ZOMG_PROFILE']) delete env[k];
    env.ZOMG_PROJECT = 'conc';
    assert.equal(zomgSync(['base', 'import', 'bb', '--file', busyboxRootfsTar()]).code, 0);
    for (const b of ['shared', 'c0', 'c1', 'a0', 'a1', 'loop']) assert.equal(zomgSync(['create', b, '--base', 'bb']).code, 0);
    server = await startServe(env);
    token = readFileSync(join(stateDir, 'token'), 'utf8').trim();
  });

  after(async () => {
    await server?.stop();
    for (const b of ['shared', 'c0', 'c1', 'a0', 'a1', 'loop']) zomgSync(['stop', b]);
    pool?.cleanup();
    if (stateDir) rmSync(stateDir, { recursive: true, force: true });
  });

  it(`a loop of ${LOOP} snapshot creates lists ${LOOP}`, () => {
    for (let i = 0; i < LOOP; i++) {
      const r = zomgSync(['snapshot', 'create', 'loop']);
      assert.equal(r.code, 0, r.stderr);
    }
    const listed = JSON.parse(zomgSync(['snapshot', 'list', 'loop', '--json']).stdout) as Array<{ name: string }>;
    assert.equal(listed.length, LOOP);
    assert.deepEqual(
      listed.map((c) => c.name),
      Array.from({ length: LOOP }, (_, i) => `v${i}`),
    );
  });

  it('CLI and API mutations and listings at once: nothing reported is lost, no name reused, no 500', async () => {
    const random = seeded(SEED);
    const deadline = Date.now() + DURATION_MS;
    /** Per box: name → 'live' | 'deleted', in the order reported. */
    const reported = new Map<string, Map<string, 'live' | 'deleted'>>();
    const failures: string[] = [];
    const record = (box: string, name: string, who: string): void => {
      const names = reported.get(box) ?? new Map<string, 'live' | 'deleted'>();
      reported.set(box, names);
      if (names.get(name) === 'live') failures.push(`${who}: ${box} got name ${name} while a snapshot of that name exists`);
      names.set(name, 'live');
    };
    const pickLive = (box: string): string | undefined => {
      const live = [...(reported.get(box) ?? new Map()).entries()].filter(([, s]) => s === 'live').map(([n]) => n);
      return live.length === 0 ? undefined : live[Math.floor(random() * live.length)];
    };
    let cliOps = 0;
    let apiOps = 0;

    const cliWorker = async (own: string): Promise<void> => {
      while (Date.now() < deadline) {
        const box = random() < 0.5 ? 'shared' : own;
        const roll = random();
        if (roll < 0.6) {
          const r = await zomg(['snapshot', 'create', box, '--json']);
          if (r.code !== 0) failures.push(`cli create ${box}: ${r.stderr.trim()}`);
          else record(box, (JSON.parse(r.stdout) as { name: string }).name, 'cli');
        } else if (roll < 0.75) {
          const victim = pickLive(own);
          if (victim === undefined) continue;
          reported.get(own)?.set(victim, 'deleted');
          const r = await zomg(['snapshot', 'delete', own, victim]);
          if (r.code !== 0) failures.push(`cli delete ${own}/${victim}: ${r.stderr.trim()}`);
        } else {
          const r = await zomg(['snapshot', 'list', box, '--json']);
          if (r.code !== 0) failures.push(`cli list ${box}: ${r.stderr.trim()}`);
        }
        cliOps++;
      }
    };
    const apiWorker = async (own: string): Promise<void> => {
      const base = '/v1/projects/conc/boxes';
      while (Date.now() < deadline) {
        const box = random() < 0.5 ? 'shared' : own;
        const roll = random();
        let res;
        if (roll < 0.55) {
          res = await api('POST', `${base}/${box}/checkpoints`, {});
          if (res.status === 201) record(box, (res.data as { name: string }).name, 'api');
        } else if (roll < 0.7) {
          const victim = pickLive(own);
          if (victim === undefined) continue;
          reported.get(own)?.set(victim, 'deleted');
          res = await api('DELETE', `${base}/${own}/checkpoints/${victim}`);
        } else if (roll < 0.8) {
          const target = pickLive(own);
          if (target === undefined) continue;
          res = await api('POST', `${base}/${own}/checkpoints/${target}/restore`);
        } else {
          res = await api('GET', `${base}/${box}/checkpoints`);
        }
        if (res.status >= 500) failures.push(`api ${res.status}: ${JSON.stringify(res.data)}`);
        else if (res.status >= 300) failures.push(`api unexpected ${res.status}: ${JSON.stringify(res.data)}`);
        apiOps++;
      }
    };
    await Promise.all([cliWorker('c0'), cliWorker('c1'), apiWorker('a0'), apiWorker('a1')]);
    assert.deepEqual(failures, []);
    assert.ok(cliOps > 0 && apiOps > 0);

    for (const [box, names] of reported) {
      const listed = new Set((JSON.parse(zomgSync(['snapshot', 'list', box, '--json']).stdout) as Array<{ name: string }>).map((c) => c.name));
      for (const [name, state] of names) {
        if (state === 'live') assert.ok(listed.has(name), `snapshot ${box}/${name} was reported created and is gone`);
        else assert.ok(!listed.has(name), `snapshot ${box}/${name} was deleted and is back`);
      }
    }
    assert.deepEqual(poolProblems(stateDir, pool.mnt), []);
  });
});
