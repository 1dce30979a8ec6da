/**
 * Diff benchmark: zomg's diff (the trees' own items, storage/diff/tree.ts) and its send-stream
 * path against the full walk, the raw `btrfs send` floor and (when installed) snapper, on a
 * 1000 dirs × 100 files subvolume.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/diff.js
 *   BENCH_DIRS=200 BENCH_RUNS=5 node dist/bench/diff.js     # smaller / fewer runs
 *
 * Needs root (a loop-mounted btrfs). The pool is always removed at the end.
 */
import { execFileSync } from 'node:child_process';
import { appendFileSync, chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, readdirSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { btrfsIoctl } from '../src/storage/btrfs-ioctl.js';
import { diffTrees, walkDiff, type InodePathResolver } from '../src/storage/diff/index.js';
import type { TreeReader } from '../src/storage/diff/tree.js';
import { run } from '../src/system/run.js';
import { isRoot, makeTestPool, type TestPool } from '../tests/helpers/pool.js';
import { BtrfsDriver } from '../src/storage/btrfs.js';

const driver = new BtrfsDriver();

const DIRS = Number(process.env.BENCH_DIRS ?? 1000);
const FILES = 100;
const RUNS = Number(process.env.BENCH_RUNS ?? 15);
const WALK_RUNS = Number(process.env.BENCH_WALK_RUNS ?? 3);

/** The driver's `btrfs send --no-data -p parent child`, a Readable that errors when send fails. */
function sendStream(parent: string, child: string): () => Readable {
  return () => driver.sendNoData(parent, child);
}

const inodePaths: InodePathResolver = async (root, ino) => {
  const { stdout } = await run('btrfs', ['inspect-internal', 'inode-resolve', String(ino), root]);
  const prefix = Buffer.byteLength(`${root}/`);
  const out: Buffer[] = [];
  for (let s = 0, i = stdout.indexOf(0x0a); i >= 0; s = i + 1, i = stdout.indexOf(0x0a, s)) out.push(stdout.subarray(s + prefix, i));
  return out;
};

interface Timing {
  median: number;
  min: number;
  max: number;
  n: number;
}

async function time(n: number, fn: () => Promise<unknown>): Promise<Timing> {
  await fn(); // warm-up, not counted
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    await fn();
    ms.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  ms.sort((a, b) => a - b);
  return { median: ms[Math.floor(ms.length / 2)] ?? NaN, min: ms[0] ?? NaN, max: ms[ms.length - 1] ?? NaN, n };
}

/**
 * Times `a` and `b` alternately, n runs each (after one warm-up of each), so that a machine
 * whose load changes during the run slows both alike; ratios of pairs are the fair reading.
 */
async function timePair(n: number, a: () => Promise<unknown>, b: () => Promise<unknown>): Promise<[Timing, Timing, number]> {
  await a();
  await b();
  const ma: number[] = [];
  const mb: number[] = [];
  const ratios: number[] = [];
  for (let i = 0; i < n; i++) {
    let t = process.hrtime.bigint();
    await a();
    ma.push(Number(process.hrtime.bigint() - t) / 1e6);
    t = process.hrtime.bigint();
    await b();
    mb.push(Number(process.hrtime.bigint() - t) / 1e6);
    ratios.push((ma.at(-1) as number) / (mb.at(-1) as number));
  }
  const stat = (ms: number[]): Timing => {
    const sorted = [...ms].sort((x, y) => x - y);
    return { median: sorted[Math.floor(n / 2)] ?? NaN, min: sorted[0] ?? NaN, max: sorted[n - 1] ?? NaN, n };
  };
  ratios.sort((x, y) => x - y);
  return [stat(ma), stat(mb), ratios[Math.floor(n / 2)] ?? NaN];
}

const fmt = (t: Timing): string => `${t.median.toFixed(1).padStart(9)} ms  (min ${t.min.toFixed(1)}, max ${t.max.toFixed(1)}, n=${t.n})`;
const btrfs = (...args: string[]): Promise<unknown> => run('btrfs', args);

function buildTree(root: string): void {
  for (let d = 0; d < DIRS; d++) {
    const dir = `${root}/d${String(d).padStart(4, '0')}`;
    mkdirSync(dir);
    for (let f = 0; f < FILES; f++) writeFileSync(`${dir}/f${String(f).padStart(3, '0')}`, `file ${d}/${f}\n`);
  }
}

const dirOf = (root: string, d: number): string => `${root}/d${String(d).padStart(4, '0')}`;
const fileOf = (root: string, d: number, f: number): string => `${dirOf(root, d)}/f${String(f).padStart(3, '0')}`;

/** Ten changes of different kinds (numbers keep them apart from the other rounds). */
function tenChanges(root: string, seed: number): void {
  const d = (k: number): number => (seed * 7 + k * 97) % DIRS;
  appendFileSync(fileOf(root, d(0), 1), 'more\n');
  writeFileSync(fileOf(root, d(1), 2), `FILE ${d(1)}/2\n`.padEnd(`file ${d(1)}/2\n`.length, '!')); // same size
  writeFileSync(fileOf(root, d(2), 3), 'x'.repeat(10_000));
  unlinkSync(fileOf(root, d(3), 4));
  unlinkSync(fileOf(root, d(4), 5));
  writeFileSync(`${dirOf(root, d(5))}/new-${seed}`, 'new\n');
  renameSync(fileOf(root, d(6), 6), `${dirOf(root, d(7))}/moved-${seed}`);
  chmodSync(fileOf(root, d(8), 7), 0o600);
  execFileSync('setfattr', ['-n', 'user.bench', '-v', String(seed), fileOf(root, d(9), 8)]);
  mkdirSync(`${dirOf(root, d(10))}/newdir-${seed}`);
}

async function main(): Promise<void> {
  if (!isRoot()) {
    console.log('bench/diff: needs root (loop-mounted btrfs); skipped');
    return;
  }
  let pool: TestPool | undefined;
  try {
    pool = makeTestPool(4096);
    const mnt = pool.mnt;
    const live = `${mnt}/big`;
    const base = `${mnt}/big@0`;
    console.log(`pool ${mnt}; building ${DIRS} dirs × ${FILES} files…`);
    const t0 = Date.now();
    await btrfs('subvolume', 'create', live);
    buildTree(live);
    await run('sync', []);
    console.log(`built ${DIRS * FILES + DIRS} entries in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    await btrfs('subvolume', 'snapshot', '-r', live, base);
    tenChanges(live, 1);
    const after10 = `${mnt}/big@1`;
    await btrfs('subvolume', 'snapshot', '-r', live, after10);

    let tmpN = 0;
    const treeReader = btrfsIoctl()?.treeReader;
    if (!treeReader) throw new Error('the addon is not built (npm run build)');
    /**
     * What `zomg diff status` does: temp ro snapshot of the live root, diff (the trees' own
     * items; the send when they cannot say), delete it. `sendOnly`: the send path alone.
     */
    const diffPath = (sendOnly: boolean) => async (old: string): Promise<number> => {
      const tmp = `${mnt}/.diff-tmp-${tmpN++}`;
      await btrfs('subvolume', 'snapshot', '-r', live, tmp);
      try {
        const r = await diffTrees({ oldRoot: old, newRoot: tmp, ...(sendOnly ? {} : { treeReader }), sendStream: sendStream(old, tmp), inodePaths });
        if (r.method !== (sendOnly ? 'send' : 'tree')) throw new Error(`the diff took the ${r.method} path`);
        return r.entries.length;
      } finally {
        await btrfs('subvolume', 'delete', tmp);
      }
    };
    const fastPath = diffPath(false);
    const sendPath = diffPath(true);
    /** The floor: the same CLI steps with nothing done in user space. */
    const floor = async (old: string): Promise<void> => {
      const tmp = `${mnt}/.diff-tmp-${tmpN++}`;
      await btrfs('subvolume', 'snapshot', '-r', live, tmp);
      try {
        await btrfs('send', '-q', '--no-data', '-p', old, '-f', '/dev/null', tmp);
      } finally {
        await btrfs('subvolume', 'delete', tmp);
      }
    };

    const fastEntries = await fastPath(base);
    const walkEntries = (await walkDiff(base, after10)).length;
    console.log(`\n== 10 changes (${fastEntries} entries from the fast path, ${walkEntries} from the walk)`);
    const [fast10, floor10, pair10] = await timePair(RUNS, () => fastPath(base), () => floor(base));
    const [sendPath10] = await timePair(RUNS, () => sendPath(base), () => floor(base));
    const send10 = await time(RUNS, () => btrfs('send', '-q', '--no-data', '-p', base, '-f', '/dev/null', after10));
    const snapDel = await time(RUNS, async () => {
      const tmp = `${mnt}/.diff-tmp-${tmpN++}`;
      await btrfs('subvolume', 'snapshot', '-r', live, tmp);
      await btrfs('subvolume', 'delete', tmp);
    });
    const verifyOnly = await time(RUNS, () => diffTrees({ oldRoot: base, newRoot: after10, treeReader, sendStream: sendStream(base, after10) }));
    const walk10 = await time(WALK_RUNS, () => walkDiff(base, after10));
    console.log(`zomg (ro snapshot + tree search + verify + delete)     ${fmt(fast10)}`);
    console.log(`  tree search + verify of two ro snapshots             ${fmt(verifyOnly)}`);
    console.log(`  the send path instead (send + parse + verify)        ${fmt(sendPath10)}`);
    console.log(`floor (CLI: ro snapshot + send --no-data + delete)     ${fmt(floor10)}`);
    console.log(`  raw send --no-data of two ro snapshots               ${fmt(send10)}`);
    console.log(`  ro snapshot + delete                                 ${fmt(snapDel)}`);
    console.log(`full walk of both trees                                ${fmt(walk10)}`);
    console.log(`ratios: fast/floor ${(fast10.median / floor10.median).toFixed(2)}× (median of the interleaved pairs ${pair10.toFixed(2)}×), walk/fast ${(walk10.median / fast10.median).toFixed(0)}×`);

    // 10,000 changes: rewrite every file of the first 100 directories (same size, other bytes).
    const many = Math.min(100, DIRS);
    for (let d = 0; d < many; d++) for (let f = 0; f < FILES; f++) if (existsSync(fileOf(live, d, f))) writeFileSync(fileOf(live, d, f), `FILE ${d}/${f}\n`);
    const after10k = `${mnt}/big@2`;
    await btrfs('subvolume', 'snapshot', '-r', live, after10k);
    const n10k = await fastPath(base);
    console.log(`\n== ${many * FILES} more changes (${n10k} entries)`);
    const [fast10k, floor10k, pair10k] = await timePair(Math.max(3, Math.floor(RUNS / 3)), () => fastPath(base), () => floor(base));
    const [sendPath10k] = await timePair(Math.max(3, Math.floor(RUNS / 3)), () => sendPath(base), () => floor(base));
    const walk10k = await time(WALK_RUNS, () => walkDiff(base, after10k));
    console.log(`zomg       ${fmt(fast10k)}`);
    console.log(`send path  ${fmt(sendPath10k)}`);
    console.log(`floor      ${fmt(floor10k)}`);
    console.log(`full walk  ${fmt(walk10k)}`);
    console.log(`ratios: fast/floor ${(fast10k.median / floor10k.median).toFixed(2)}× (median of the interleaved pairs ${pair10k.toFixed(2)}×), walk/fast ${(walk10k.median / fast10k.median).toFixed(1)}×`);

    await snapperBench(mnt, live, fastPath, treeReader);
  } finally {
    pool?.cleanup();
  }
}

/** snapper status between two of its snapshots of `live`, with its config under --root=mnt. */
async function snapperBench(mnt: string, live: string, fastPath: (old: string) => Promise<number>, treeReader: TreeReader): Promise<void> {
  console.log('\n== snapper');
  const which = spawnOk('snapper', ['--version']);
  if (!which) {
    console.log('snapper is not installed: skipped');
    return;
  }
  // snapper --no-dbus --root=R reads R/etc/snapper/configs/NAME; SUBVOLUME is relative to R.
  const template = '/usr/share/snapper/config-templates/default';
  if (!existsSync(template)) {
    console.log(`snapper: no ${template} to build a config from: skipped`);
    return;
  }
  mkdirSync(`${mnt}/etc/snapper/configs`, { recursive: true });
  mkdirSync(`${mnt}/etc/default`, { recursive: true });
  copyFileSync(template, `${mnt}/etc/snapper/configs/bench`);
  const conf = execFileSync('sed', ['-e', `s|^SUBVOLUME=.*|SUBVOLUME="/${live.slice(mnt.length + 1)}"|`, '-e', 's|^FSTYPE=.*|FSTYPE="btrfs"|', `${mnt}/etc/snapper/configs/bench`]);
  writeFileSync(`${mnt}/etc/snapper/configs/bench`, conf);
  writeFileSync(`${mnt}/etc/default/snapper`, 'SNAPPER_CONFIGS="bench"\n');
  await btrfs('subvolume', 'create', `${live}/.snapshots`);
  const snapper = (...args: string[]): Promise<{ stdout: Buffer; stderr: string }> => run('snapper', ['--no-dbus', `--root=${mnt}`, '-c', 'bench', ...args]);
  try {
    await snapper('create', '-d', 'one');
    tenChanges(live, 2);
    await snapper('create', '-d', 'two');
    const snaps = readdirSync(`${live}/.snapshots`).filter((n) => /^\d+$/.test(n));
    if (snaps.length !== 2) throw new Error(`expected 2 snapper snapshots, found ${snaps.join(',')}`);
    const clearCache = (): void => {
      for (const s of snaps) for (const f of readdirSync(`${live}/.snapshots/${s}`)) if (f.startsWith('filelist-')) unlinkSync(`${live}/.snapshots/${s}/${f}`);
    };
    const first = await snapper('status', '1..2');
    console.log(`snapper status 1..2 lists ${first.stdout.toString().trim().split('\n').filter(Boolean).length} lines${first.stderr.trim() ? ` (stderr: ${first.stderr.trim()})` : ''}`);
    const ro = await time(RUNS, async () => {
      clearCache();
      await snapper('status', '1..2');
    });
    const cached = await time(RUNS, () => snapper('status', '1..2'));
    const liveStatus = await time(WALK_RUNS, () => snapper('status', '1..0'));
    const one = `${live}/.snapshots/1/snapshot`;
    lstatSync(one);
    const ours = await time(RUNS, () => fastPath(one));
    const two = `${live}/.snapshots/2/snapshot`;
    const oursRo = await time(RUNS, () => diffTrees({ oldRoot: one, newRoot: two, treeReader, sendStream: sendStream(one, two), inodePaths }));
    console.log(`snapper status 1..2 (two ro snapshots: send ioctl; cache removed) ${fmt(ro)}`);
    console.log(`snapper status 1..2 (cached filelist)                            ${fmt(cached)}`);
    console.log(`snapper status 1..0 (against the live subvolume: full walk)      ${fmt(liveStatus)}`);
    console.log(`zomg fast path, snapshot 1 vs the live subvolume                 ${fmt(ours)}`);
    console.log(`zomg tree search + verify, snapshot 1 vs snapshot 2              ${fmt(oursRo)}`);
    console.log(`ratios: snapper 1..0 / zomg live ${(liveStatus.median / ours.median).toFixed(0)}×, zomg 1..2 / snapper 1..2 ${(oursRo.median / ro.median).toFixed(2)}×`);
  } catch (err) {
    console.log(`snapper did not work here: ${err instanceof Error ? err.message : String(err)}`);
  }
}

function spawnOk(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

await main();
