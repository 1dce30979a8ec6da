/**
 * Whole-process `zomg base list` in local mode (target median ≤ 150 ms), against the
 * floor of starting Node itself. Run: node dist/bench/base-list.js
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { benchEngine, report, syntheticBase, timeMs } from './lib.js';

const MAIN = fileURLToPath(new URL('../bundle/cli/zomg.cjs', import.meta.url));
const env = await benchEngine(1024);
try {
  await syntheticBase(env, 'one', 10);
  await syntheticBase(env, 'two', 10);
  const childEnv = { ...process.env, ZOMG_HOME: env.stateDir, ZOMG_POOL_PATH: env.pool.mnt };
  // NODE_EXTRA_CA_CERTS (set in some environments) makes every Node start parse a CA bundle:
  // measured both ways so the part that is zomg's own stays visible.
  const bare: NodeJS.ProcessEnv = { ...childEnv };
  delete bare.NODE_EXTRA_CA_CERTS;
  const list = await timeMs(21, () => execFileSync(process.execPath, [MAIN, 'base', 'list'], { env: bare }));
  const node = await timeMs(21, () => execFileSync(process.execPath, ['-e', '0'], { env: bare }));
  const rows: Array<[string, string | number]> = [
    ['zomg base list', list],
    ['node -e 0 (the floor)', node],
    ['target', list <= 150 ? 'met (<= 150 ms)' : 'MISSED (> 150 ms)'],
  ];
  if (process.env.NODE_EXTRA_CA_CERTS) {
    rows.push(['zomg base list with NODE_EXTRA_CA_CERTS as set here', await timeMs(21, () => execFileSync(process.execPath, [MAIN, 'base', 'list'], { env: childEnv }))]);
    rows.push(['node -e 0 with NODE_EXTRA_CA_CERTS', await timeMs(21, () => execFileSync(process.execPath, ['-e', '0'], { env: childEnv }))]);
  }
  report('whole-process `zomg base list`, local mode (median of 21)', rows);
} finally {
  await env.cleanup();
}
