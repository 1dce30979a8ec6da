/** Shared benchmark helpers: timing, a pool + engine, and synthetic trees of N files. */
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseBoxName, parseProjectName } from '../src/core/names.js';
import { commitVersion, placeStaged } from '../src/engine/versions.js';
import { type Engine, createEngine } from '../src/engine/engine.js';
import { makeTestPool, type TestPool } from '../tests/helpers/pool.js';

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};

/** Runs `fn` `runs` times (after one warm-up) and returns the median in ms. */
export async function timeMs(runs: number, fn: (i: number) => unknown, between?: (i: number) => unknown): Promise<number> {
  await fn(-1);
  await between?.(-1);
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await fn(i);
    times.push(performance.now() - t0);
    await between?.(i);
  }
  return median(times);
}

/** Runs a program with its output ignored; resolves with its exit code. */
export function spawnWait(command: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: 'ignore' });
    child.on('error', reject);
    child.on('close', (code) => resolve(code ?? -1));
  });
}

/** Times one run of `fn`, which resolves with an exit code; a non-zero exit fails the bench. */
export async function timedExit(fn: () => Promise<number>): Promise<number> {
  const t0 = performance.now();
  const code = await fn();
  const ms = performance.now() - t0;
  if (code !== 0) throw new Error(`benchmark command failed with exit ${code}`);
  return ms;
}

/** Fills `dir` with `files` small files spread over directories of 100. */
export function fillTree(dir: string, files: number): void {
  const perDir = 100;
  for (let d = 0; d * perDir < files; d++) {
    const sub = join(dir, `d${d}`);
    mkdirSync(sub, { recursive: true });
    for (let f = 0; f < perDir && d * perDir + f < files; f++) writeFileSync(join(sub, `f${f}`), `file ${d}/${f}\n`);
  }
}

export interface BenchEnv {
  pool: TestPool;
  stateDir: string;
  engine: Engine;
  cleanup(): Promise<void>;
}

export async function benchEngine(poolSizeMb = 4096): Promise<BenchEnv> {
  const pool = makeTestPool(poolSizeMb);
  const stateDir = mkdtempSync(join(tmpdir(), 'zomg-bench-'));
  const engine = await createEngine({ stateDir, poolPath: pool.mnt, onSizesPending: () => undefined });
  return {
    pool,
    stateDir,
    engine,
    async cleanup() {
      for (const box of await engine.listBoxes()) {
        if (box.status === 'running') await engine.stopBox({ project: parseProjectName(box.project), name: parseBoxName(box.name) });
      }
      await engine.close();
      pool.cleanup();
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
}

/** A base version holding a synthetic tree of `files` files (built in staging, committed like an import). */
export async function syntheticBase(env: BenchEnv, name: string, files: number): Promise<void> {
  const ctx = env.engine.ctx;
  const staging = ctx.pool.newStaging(name);
  await ctx.pool.create(staging);
  fillTree(ctx.pool.hostPath(staging), files);
  execFileSync('sync');
  await commitVersion(ctx, { alias: name, kind: 'import', place: placeStaged(ctx, staging) });
}

export const ratio = (a: number, b: number): string => (a / b).toFixed(2);

export function report(title: string, rows: Array<[string, string | number]>): void {
  console.log(`\n${title}`);
  for (const [k, v] of rows) console.log(`  ${k.padEnd(58)} ${typeof v === 'number' ? `${v.toFixed(1)} ms` : v}`);
}
