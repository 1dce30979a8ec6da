/**
 * Data volumes: snapshot and `--from` clone of a ~100k-file volume vs a ~1k-file one
 * (target <= 1.5); backups of the 100k-file volume: incremental after 10 changed files vs
 * the full backup (target <= 0.05), vs `restic backup` of the same directory after the same
 * changes (target: >= 10x faster), full backup vs restic's first backup (target: not slower),
 * and restore of the chain vs `restic restore`. Anchors are measured in the same run.
 * Run: node dist/bench/volumes.js
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { ProjectName, SafeName } from '../src/core/names.js';
import { benchEngine, fillTree, median, ratio, report, timeMs } from './lib.js';

const RUNS = 7;
const env = await benchEngine(6144);
const scratch = mkdtempSync('/var/tmp/zomg-bench-volumes-');
const vol = (n: string) => ({ project: 'bench' as ProjectName, name: n as SafeName });
const once = async (fn: () => unknown): Promise<number> => {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
};
try {
  const small = await env.engine.createVolume(vol('small'));
  const big = await env.engine.createVolume(vol('big'));
  fillTree(join(env.pool.mnt, 'volumes', small.id), 1_000);
  const bigDir = join(env.pool.mnt, 'volumes', big.id);
  fillTree(bigDir, 100_000);
  execFileSync('sync');

  const snapSmall = await timeMs(RUNS, () => env.engine.createVolumeSnapshot(vol('small')));
  const snapBig = await timeMs(RUNS, () => env.engine.createVolumeSnapshot(vol('big')));
  const cloneSmall = await timeMs(RUNS, (i) => env.engine.createVolume(vol(`small-c${i + 1}`), { from: vol('small') }));
  const cloneBig = await timeMs(RUNS, (i) => env.engine.createVolume(vol(`big-c${i + 1}`), { from: vol('big') }));
  report('volume snapshot and clone (engine calls, medians)', [
    ['snapshot, 1k-file volume', snapSmall],
    ['snapshot, 100k-file volume', snapBig],
    ['ratio 100k / 1k (target <= 1.5)', ratio(snapBig, snapSmall)],
    ['clone --from, 1k-file volume', cloneSmall],
    ['clone --from, 100k-file volume', cloneBig],
    ['ratio 100k / 1k (target <= 1.5)', ratio(cloneBig, cloneSmall)],
  ]);

  // Backups: zomg to a file:// target on the local disk, restic to a repository on the same disk.
  const target = join(scratch, 'zomg-target');
  mkdirSync(target);
  const url = `file://${target}`;
  const repo = join(scratch, 'restic-repo');
  const resticEnv = { ...process.env, RESTIC_PASSWORD: 'bench', RESTIC_REPOSITORY: repo, RESTIC_CACHE_DIR: join(scratch, 'restic-cache') };
  const restic = (...args: string[]) => execFileSync('restic', ['-q', ...args], { env: resticEnv, stdio: ['ignore', 'ignore', 'inherit'] });
  restic('init');
  let round = 0;
  const change10 = () => {
    round++;
    for (let i = 0; i < 10; i++) writeFileSync(join(bigDir, `d${i * 97}`, `f${i}`), `changed in round ${round}\n`);
  };

  execFileSync('sync');
  const zomgFull = await once(() => env.engine.createBackup(vol('big'), { to: url }));
  execFileSync('sync');
  const resticFull = await once(() => restic('backup', bigDir));
  const zomgIncs: number[] = [];
  const resticIncs: number[] = [];
  for (let i = 0; i < 5; i++) {
    change10();
    execFileSync('sync');
    zomgIncs.push(await once(() => env.engine.createBackup(vol('big'), { to: url })));
    resticIncs.push(await once(() => restic('backup', bigDir)));
  }
  const zomgInc = median(zomgIncs);
  const resticInc = median(resticIncs);

  const zomgRestores: number[] = [];
  const resticRestores: number[] = [];
  for (let i = 0; i < 3; i++) {
    zomgRestores.push(await once(() => env.engine.restoreBackup({ from: url, source: vol('big'), to: vol(`restored-${i}`) })));
    const dest = join(scratch, `restic-restore-${i}`);
    resticRestores.push(await once(() => restic('restore', 'latest', '--target', dest)));
    rmSync(dest, { recursive: true, force: true });
  }
  const chain = (await env.engine.listBackups(url, { project: 'bench', volume: 'big' })).length;
  report(`backups of the 100k-file volume (incremental after 10 changed files: medians of 5; restore: medians of 3, chain of ${chain})`, [
    ['zomg full backup', zomgFull],
    ['restic first backup (anchor)', resticFull],
    ['ratio zomg full / restic first (target <= 1)', ratio(zomgFull, resticFull)],
    ['zomg incremental backup', zomgInc],
    ['ratio zomg incremental / zomg full (target <= 0.05)', ratio(zomgInc, zomgFull)],
    ['restic backup after the same changes (anchor)', resticInc],
    ['ratio restic / zomg incremental (target >= 10)', ratio(resticInc, zomgInc)],
    ['zomg restore of the chain into a new volume', median(zomgRestores)],
    ['restic restore latest (anchor)', median(resticRestores)],
    ['ratio zomg restore / restic restore', ratio(median(zomgRestores), median(resticRestores))],
  ]);
} finally {
  await env.cleanup();
  rmSync(scratch, { recursive: true, force: true });
}
