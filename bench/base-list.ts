/**
 * Whole-process `zomg base list` in local mode (target median ≤ 150 ms), against the
 * floor of starting Node itself. Run: node dist/bench/base-list.js
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { benchEngine, report, syntheticBase, timeMs } from './lib.js';

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const env = await benchEngine(1024);
try {
  await syntheticBase(env, 'one', 10);
  await syntheticBase(env, 'two', 10);
  const childEnv = { ...process.env, ZOMG_HOME: env.stateDir, ZOMG_POOL_PATH: env.pool.mnt };
  const list = await timeMs(21, () => execFileSync(process.execPath, [MAIN, 'base', 'list'], { env: childEnv }));
  const node = await timeMs(21, () => execFileSync(process.execPath, ['-e', '0']));
  report('whole-process `zomg base list`, local mode (median of 21)', [
    ['zomg base list', list],
    ['node -e 0 (the floor)', node],
    ['target', list <= 150 ? 'met (<= 150 ms)' : 'MISSED (> 150 ms)'],
  ]);
} finally {
  await env.cleanup();
}
