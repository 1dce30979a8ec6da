/**
 * Snapshots and restores are O(1): snapshot create on a ~100k-file box vs a ~1k-file box
 * (target ≤ 1.5), the engine call vs raw `btrfs subvolume snapshot -r` (target ≤ 1.5×);
 * restore of the 100k-file box vs the raw btrfs operations it performs (target ≤ 3×) and vs
 * `cp -a` of the same tree (what a naive tool does). Run: node dist/bench/snapshot.js
 */
import { execFileSync } from 'node:child_process';
import { renameSync } from 'node:fs';
import { join } from 'node:path';
import type { BoxName, ProjectName } from '../src/core/names.js';
import { benchEngine, ratio, report, syntheticBase, timeMs } from './lib.js';

const RUNS = 15;
const env = await benchEngine();
const btrfs = (...args: string[]) => execFileSync('btrfs', args, { stdio: 'ignore' });
try {
  await syntheticBase(env, 'small', 1_000);
  await syntheticBase(env, 'big', 100_000);
  const ref = (n: string) => ({ project: 'bench' as ProjectName, name: n as BoxName });
  const smallBox = await env.engine.createBox(ref('small'), { base: 'small', start: false });
  const bigBox = await env.engine.createBox(ref('big'), { base: 'big', start: false });
  void smallBox;
  const snapSmall = await timeMs(RUNS, () => env.engine.createSnapshot(ref('small')));
  const snapBig = await timeMs(RUNS, () => env.engine.createSnapshot(ref('big')));
  const root = join(env.pool.mnt, 'roots', bigBox.id);
  const rawSnap = await timeMs(RUNS, (i) => btrfs('subvolume', 'snapshot', '-r', root, join(env.pool.mnt, 'staging', `raw-ro-${i + 1}`)));

  const restore = await timeMs(RUNS, (i) => env.engine.restoreSnapshot(ref('big'), i % 2 ? 'v0' : 'v1'));
  // The raw operations a restore performs: rename aside, snapshot into place, delete the old root.
  const cp = join(env.pool.mnt, 'checkpoints', bigBox.id, 'v0');
  const scratch = join(env.pool.mnt, 'staging', 'raw-root');
  btrfs('subvolume', 'snapshot', cp, scratch);
  const rawRestore = await timeMs(RUNS, () => {
    renameSync(scratch, `${scratch}.old`);
    btrfs('subvolume', 'snapshot', cp, scratch);
    btrfs('subvolume', 'delete', `${scratch}.old`);
  });
  const copy = await timeMs(3, (i) => execFileSync('cp', ['-a', '--reflink=never', cp, join(env.pool.mnt, 'staging', `copy-${i + 1}`)]));
  report('snapshot create and restore (engine calls, medians)', [
    ['snapshot create, 1k-file box', snapSmall],
    ['snapshot create, 100k-file box', snapBig],
    ['raw `btrfs subvolume snapshot -r`, 100k-file box', rawSnap],
    ['ratio 100k / 1k (target <= 1.5)', ratio(snapBig, snapSmall)],
    ['ratio engine / raw snapshot -r (target <= 1.5)', ratio(snapBig, rawSnap)],
    ['restore, 100k-file box', restore],
    ['raw rename + snapshot + delete', rawRestore],
    ['`cp -a --reflink=never` of the same tree (3 runs)', copy],
    ['ratio restore / raw ops (target <= 3)', ratio(restore, rawRestore)],
    ['ratio cp -a / restore (how much faster than copying)', ratio(copy, restore)],
  ]);
} finally {
  await env.cleanup();
}
