/**
 * `zomg cp <dir> box:/path` of a 100k-file directory (the CLI in local mode: tar → the
 * safety gate → tar into the box) vs two anchors straight into the box's root subvolume:
 * plain `tar -c | tar -x --numeric-owner -p`, and the same with the fidelity options zomg cp
 * uses (CP_TAR_KEEP: every file's xattrs, ACLs among them, are read and written).
 * Interleaved, RUNS runs each, each into a fresh directory, `sync` after each (target: zomg cp ≥ 0.8× the anchor's throughput).
 * Run as root: node dist/bench/cp.js
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import type { BoxName, ProjectName } from '../src/core/names.js';
import { busyboxRootfsTar } from '../tests/helpers/fixtures.js';
import { CP_TAR_KEEP } from '../src/system/tarstream.js';
import { benchEngine, fillTree, median, ratio, report } from './lib.js';

// What `bin` runs (npm run build makes it): the numbers are a user's.
const MAIN = fileURLToPath(new URL('../bundle/cli/zomg.cjs', import.meta.url));
const FILES = 100_000;
const RUNS = 2;
const env = await benchEngine(4096);
const work = mkdtempSync('/var/tmp/zomg-bench-cp-');
try {
  await env.engine.importBase('bb', busyboxRootfsTar());
  const box = await env.engine.createBox({ project: 'bench' as ProjectName, name: 'box' as BoxName }, { base: 'bb', start: false });
  const root = join(env.pool.mnt, 'roots', box.id);
  const src = join(work, 'tree');
  fillTree(src, FILES);
  execFileSync('sync');
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ZOMG_HOME: env.stateDir, ZOMG_POOL_PATH: env.pool.mnt, ZOMG_NO_SIZE_WORKER: '1', ZOMG_PROJECT: 'bench' };
  delete childEnv.ZOMG_URL;
  const time = (fn: () => void): number => {
    const t0 = performance.now();
    fn();
    execFileSync('sync');
    return performance.now() - t0;
  };
  const anchor: number[] = [];
  const faithful: number[] = [];
  const zomg: number[] = [];
  const keep = CP_TAR_KEEP.join(' ').replace('*', "'*'");
  for (let i = 0; i < RUNS; i++) {
    const a = join(root, `anchor${i}`);
    mkdirSync(a);
    anchor.push(time(() => execFileSync('sh', ['-c', 'tar -c -f - --numeric-owner -p -C "$1" tree | tar -x -f - --numeric-owner -p -C "$2"', 'sh', work, a])));
    const f = join(root, `faithful${i}`);
    mkdirSync(f);
    faithful.push(time(() => execFileSync('sh', ['-c', `tar -c -f - ${keep} -C "$1" tree | tar -x -f - ${keep} --same-owner -C "$2"`, 'sh', work, f])));
    mkdirSync(join(root, `zomg${i}`));
    zomg.push(time(() => execFileSync(process.execPath, [MAIN, 'cp', src, `box:/zomg${i}`], { env: childEnv, stdio: ['ignore', 'ignore', 'inherit'] })));
  }
  const n = execFileSync('find', [join(root, 'zomg0'), '-type', 'f'], { maxBuffer: 64 << 20 }).toString().split('\n').filter(Boolean).length;
  if (n !== FILES) throw new Error(`zomg cp copied ${n} files, expected ${FILES}`);
  const a = median(anchor);
  const fa = median(faithful);
  const z = median(zomg);
  report(`Copy a ${FILES / 1000}k-file directory into a (stopped) box, median of ${RUNS}`, [
    ['anchor: tar -c | tar -x (--numeric-owner -p)', a],
    ['anchor with zomg cp\'s options (+ --xattrs)', fa],
    ['zomg cp (CLI, local mode)', z],
    ['throughput zomg cp / plain anchor (target >= 0.8)', ratio(a, z)],
    ['throughput zomg cp / anchor with the same options', ratio(fa, z)],
  ]);
} finally {
  rmSync(work, { recursive: true, force: true });
  await env.cleanup();
}
