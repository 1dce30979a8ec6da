/**
 * `zomg base save` is O(1): save of a ~100k-file box vs a ~1k-file box (target ≤ 1.5), the
 * engine call vs a raw `btrfs subvolume snapshot -r` of the same root, and vs `podman commit`
 * of a container holding the same 100k-file tree (what saving a container as an image costs
 * with a container engine: its changes are tarred into a layer). Podman's storage is a
 * private root inside the throw-away pool (btrfs driver, as zomg's own store), never the host's.
 * Run as root: node dist/bench/save.js [runs]
 */
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { BoxName, ProjectName } from '../src/core/names.js';
import { podmanStoreFor } from '../src/engine/builds.js';
import { busyboxRootfsTar } from '../tests/helpers/fixtures.js';
import { benchEngine, fillTree, ratio, report, syntheticBase, timeMs } from './lib.js';

const RUNS = Number(process.argv[2] ?? 15);
const env = await benchEngine();
const store = podmanStoreFor(env.pool.mnt);
const podman = (...args: string[]): string =>
  execFileSync('podman', ['--root', store.podmanRoot ?? '', '--runroot', store.podmanRunroot ?? '', '--storage-driver', 'btrfs', ...args], { encoding: 'utf8' });
try {
  await syntheticBase(env, 'small', 1_000);
  await syntheticBase(env, 'big', 100_000);
  const ref = (n: string) => ({ project: 'bench' as ProjectName, name: n as BoxName });
  await env.engine.createBox(ref('small'), { base: 'small', start: false });
  const bigBox = await env.engine.createBox(ref('big'), { base: 'big', start: false });

  // Interleaved, so drift in the machine's state hits both sizes alike.
  const times = { small: [] as number[], big: [] as number[] };
  const one = async (size: 'small' | 'big'): Promise<number> => {
    const t0 = performance.now();
    await env.engine.saveBase(`saved-${size}`, ref(size));
    return performance.now() - t0;
  };
  await one('small');
  await one('big');
  for (let i = 0; i < RUNS; i++) {
    times.small.push(await one('small'));
    times.big.push(await one('big'));
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
  const saveSmall = median(times.small);
  const saveBig = median(times.big);
  const root = join(env.pool.mnt, 'roots', bigBox.id);
  const rawSnap = await timeMs(RUNS, (i) => execFileSync('btrfs', ['subvolume', 'snapshot', '-r', root, join(env.pool.mnt, 'staging', `raw-ro-${i + 1}`)], { stdio: 'ignore' }));

  // The same 100k-file tree as a container's changes on top of a busybox image.
  podman('import', '-q', busyboxRootfsTar(), 'localhost/bench-save-base:1');
  podman('create', '--name', 'bench-save', '--network', 'none', 'localhost/bench-save-base:1', '/bin/sh');
  const mounted = podman('mount', 'bench-save').trim();
  fillTree(join(mounted, 'tree'), 100_000);
  execFileSync('sync');
  // One run: it takes minutes where a save takes milliseconds, so one is enough for the ratio.
  const t0 = performance.now();
  podman('commit', '-q', 'bench-save', 'localhost/bench-save-commit:1');
  const commit = performance.now() - t0;

  report(`base save (engine calls, medians of ${RUNS}; podman commit: 1)`, [
    ['zomg base save, 1k-file box', saveSmall],
    ['zomg base save, 100k-file box', saveBig],
    ['raw `btrfs subvolume snapshot -r`, 100k-file root', rawSnap],
    ['`podman commit` of a container with the same 100k files', commit],
    ['ratio save 100k / save 1k (target <= 1.5)', `${ratio(saveBig, saveSmall)} ${saveBig / saveSmall <= 1.5 ? 'met' : 'MISSED'}`],
    ['ratio save / raw snapshot -r', ratio(saveBig, rawSnap)],
    ['ratio podman commit / zomg save (100k files)', ratio(commit, saveBig)],
  ]);
} finally {
  try {
    podman('rm', '-a', '-f');
    podman('rmi', '-a', '-f');
  } finally {
    rmSync(store.podmanRunroot ?? '', { recursive: true, force: true });
    await env.cleanup();
  }
}
