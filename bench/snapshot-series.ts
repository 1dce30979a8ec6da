/**
 * Snapshots in a row of a ~100k-file box, whole-process (`zomg snapshot create`), with the
 * background size worker ON as a user has it: each create must cost about what the first
 * does (target: every one ≤ 1.5× the first), because one worker sizes at a time and a
 * snapshot is sized from its predecessor plus the change between them, not by a walk.
 * Also prints how long the sizes took to arrive. Run as root: node dist/bench/snapshot-series.js
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { BoxName, ProjectName } from '../src/core/names.js';
import { benchEngine, ratio, report, syntheticBase } from './lib.js';

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const SERIES = 5;
const env = await benchEngine();
try {
  await syntheticBase(env, 'big', 100_000);
  const ref = { project: 'bench' as ProjectName, name: 'big' as BoxName };
  const box = await env.engine.createBox(ref, { base: 'big', start: false });
  // The base's own size first (a full walk, once per base, like after an import).
  await env.engine.computeSizes();
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ZOMG_HOME: env.stateDir, ZOMG_POOL_PATH: env.pool.mnt };
  delete childEnv.ZOMG_NO_SIZE_WORKER;
  delete childEnv.NODE_EXTRA_CA_CERTS;
  const times: number[] = [];
  for (let i = 0; i < SERIES; i++) {
    // A few changed files between snapshots, as a user's work would make.
    for (let f = 0; f < 10; f++) writeFileSync(join(env.pool.mnt, 'roots', box.id, 'd1', `new-${i}-${f}`), `change ${i} ${f}\n`);
    const t0 = performance.now();
    execFileSync(process.execPath, [MAIN, 'snapshot', 'create', 'bench:big'], { env: childEnv, stdio: 'ignore' });
    times.push(performance.now() - t0);
  }
  const started = performance.now();
  let sized = 0;
  for (;;) {
    const cps = await env.engine.listSnapshots(ref);
    sized = cps.filter((c) => c.size_bytes !== null).length;
    if (sized === SERIES || performance.now() - started > 120_000) break;
    await sleep(50);
  }
  const settle = performance.now() - started;
  const first = times[0] as number;
  report(`${SERIES} snapshot creates in a row of a 100k-file box, whole-process, size worker on`, [
    ...times.map((t, i): [string, number] => [`snapshot create #${i + 1}`, t]),
    ...times.slice(1).map((t, i): [string, string] => [`ratio #${i + 2} / #1 (target <= 1.5)`, ratio(t, first)]),
    [`all ${SERIES} sizes known ${sized === SERIES ? 'after' : 'NOT within'} (after the last create)`, settle],
  ]);
} finally {
  await env.cleanup();
}
