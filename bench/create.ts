/**
 * `zomg create` is O(1) in the size of the base: create from a ~100k-file base vs a ~1k-file
 * base (target ratio ≤ 1.5), and the engine call vs a raw `btrfs subvolume snapshot`
 * (target ≤ 1.5×). Run: node dist/bench/create.js
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import type { BoxName, ProjectName } from '../src/core/names.js';
import { benchEngine, ratio, report, syntheticBase, timeMs } from './lib.js';

const RUNS = 15;
const env = await benchEngine();
try {
  await syntheticBase(env, 'small', 1_000);
  await syntheticBase(env, 'big', 100_000);
  const ref = (n: string) => ({ project: 'bench' as ProjectName, name: n as BoxName });
  // The clone (start: false) is what the O(1) claim is about; starting the box is measured apart.
  const createFrom = (base: string) => (i: number) => env.engine.createBox(ref(`${base}-${i + 1}`), { base, start: false });
  const small = await timeMs(RUNS, createFrom('small'));
  const big = await timeMs(RUNS, createFrom('big'));
  const src = join(env.pool.mnt, 'bases', 'big');
  const raw = await timeMs(RUNS, (i) => execFileSync('btrfs', ['subvolume', 'snapshot', src, join(env.pool.mnt, 'staging', `raw-${i + 1}`)], { stdio: 'ignore' }));
  report('zomg create (engine call, median of 15)', [
    ['create from a 1k-file base', small],
    ['create from a 100k-file base', big],
    ['raw `btrfs subvolume snapshot` of the 100k-file base', raw],
    ['ratio 100k / 1k (target <= 1.5)', ratio(big, small)],
    ['ratio engine / raw snapshot (target <= 1.5)', ratio(big, raw)],
  ]);
} finally {
  await env.cleanup();
}
