/**
 * The diff at a million entries: a 1000 dirs × 1000 files subvolume, with 10 and with
 * 100,000 changes (zomg's path: ro snapshot of the live tree + the trees' own items, or the
 * send when they cannot say + verify + delete, against the floor: ro snapshot +
 * `btrfs send --no-data` + delete), and the
 * whole tree as one diff of a million added paths, and the other way round as a million
 * removed ones, each streamed as `diff status --json` writes it, in a child process whose
 * peak RSS is reported.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/diff-large.js
 *   BENCH_LARGE_DIRS=100 node dist/bench/diff-large.js      # 100k entries
 *
 * Needs root. Building the tree takes minutes, so it is kept between runs on a loop image
 * in /var/tmp/zomg-bench (BENCH_LARGE_FRESH=1 rebuilds it); the image is unmounted at the end.
 */
import { execFileSync } from 'node:child_process';
import { appendFileSync, chmodSync, createWriteStream, existsSync, mkdirSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { DiffStatusWriter } from '../src/cli/diff-output.js';
import { BtrfsDriver } from '../src/storage/btrfs.js';
import { btrfsIoctl } from '../src/storage/btrfs-ioctl.js';
import { openDiff } from '../src/storage/diff/index.js';
import type { TreeReader } from '../src/storage/diff/tree.js';
import { isRoot } from '../tests/helpers/pool.js';
import { median } from './lib.js';

const driver = new BtrfsDriver();
const DIRS = Number(process.env.BENCH_LARGE_DIRS ?? 1000);
const FILES = 1000;
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const CACHE = '/var/tmp/zomg-bench';
const IMAGE = join(CACHE, `diff-large-${DIRS}.img`);
const MNT = join(CACHE, `diff-large-${DIRS}.mnt`);

const btrfs = (...args: string[]): void => void execFileSync('btrfs', args, { stdio: ['ignore', 'ignore', 'pipe'] });
const dirOf = (root: string, d: number): string => `${root}/d${String(d).padStart(4, '0')}`;
const fileOf = (root: string, d: number, f: number): string => `${dirOf(root, d)}/f${String(f).padStart(4, '0')}`;

/** One diff through the streaming API into `diff status --json`'s writer; returns the count. */
async function streamDiff(oldRoot: string, newRoot: string, out: NodeJS.WritableStream): Promise<number> {
  const { method, entries } = await openDiff({ oldRoot, newRoot, ...treeSearch(), sendStream: () => driver.sendNoData(oldRoot, newRoot) });
  if (method === 'walk') throw new Error('the fast path fell back to the walk');
  console.error(`  (the ${method} path)`);
  const writer = new DiffStatusWriter(true, out);
  await writer.head({ box: 'bench', project: 'bench', against: 'v0', to: null, method });
  let n = 0;
  for await (const e of entries) {
    const wait = writer.change(e);
    if (wait) await wait;
    n++;
  }
  await writer.end();
  return n;
}

/** The tree comparison, as zomg uses it (the send when the trees cannot say). */
function treeSearch(): { treeReader: TreeReader } {
  const treeReader = btrfsIoctl()?.treeReader;
  if (!treeReader) throw new Error('the addon is not built (npm run build)');
  return { treeReader };
}

const row = (k: string, v: number): void => console.log(`  ${k.padEnd(56)} ${v.toFixed(1).padStart(9)} ms`);

/** One diff of the whole tree, in a child process (its peak RSS), against the send of the same pair. */
function millionCase(what: string, oldRoot: string, newRoot: string): void {
  const t0 = performance.now();
  btrfs('send', '-q', '--no-data', '-p', oldRoot, '-f', '/dev/null', newRoot);
  const sendMs = performance.now() - t0;
  const self = fileURLToPath(import.meta.url);
  const res = JSON.parse(execFileSync(process.execPath, [self, '--child', oldRoot, newRoot], { encoding: 'utf8', maxBuffer: 1 << 20 }).trim()) as { n: number; ms: number; maxRssKb: number };
  console.log(`\n== ${res.n} changes (${what}), streamed as diff status --json to /dev/null`);
  row('zomg send + parse + verify + JSON out (two ro snapshots)', res.ms);
  row('floor: send --no-data of the same pair', sendMs);
  console.log(`  ratio ${(res.ms / sendMs).toFixed(2)}×; peak RSS of the process ${(res.maxRssKb / 1024).toFixed(0)} MiB`);
}

async function child(oldRoot: string, newRoot: string): Promise<void> {
  const out = createWriteStream('/dev/null');
  const t = performance.now();
  const n = await streamDiff(oldRoot, newRoot, out);
  const ms = performance.now() - t;
  out.end();
  console.log(JSON.stringify({ n, ms, maxRssKb: process.resourceUsage().maxRSS }));
}

function time(runs: number, fn: () => unknown | Promise<unknown>): Promise<number> {
  return (async () => {
    await fn();
    const ms: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t = performance.now();
      await fn();
      ms.push(performance.now() - t);
    }
    return median(ms);
  })();
}

async function main(): Promise<void> {
  if (!isRoot()) {
    console.log('bench/diff-large: needs root; skipped');
    return;
  }
  mkdirSync(MNT, { recursive: true });
  if (process.env.BENCH_LARGE_FRESH === '1') rmSync(IMAGE, { force: true });
  const fresh = !existsSync(IMAGE);
  if (fresh) {
    execFileSync('truncate', ['-s', '12G', IMAGE]);
    execFileSync('mkfs.btrfs', ['-q', IMAGE]);
  }
  execFileSync('mount', ['-o', 'loop,noatime', IMAGE, MNT]);
  try {
    const empty = `${MNT}/empty@0`;
    const full = `${MNT}/full@0`;
    if (!existsSync(full)) {
      const t0 = Date.now();
      if (!existsSync(`${MNT}/build`)) btrfs('subvolume', 'create', `${MNT}/build`);
      if (!existsSync(empty)) btrfs('subvolume', 'snapshot', '-r', `${MNT}/build`, empty);
      console.log(`building ${DIRS} dirs × ${FILES} files (kept in ${IMAGE})…`);
      for (let d = 0; d < DIRS; d++) {
        mkdirSync(dirOf(`${MNT}/build`, d), { recursive: true });
        for (let f = 0; f < FILES; f++) writeFileSync(fileOf(`${MNT}/build`, d, f), `file ${d}/${f}\n`);
      }
      execFileSync('sync');
      btrfs('subvolume', 'snapshot', '-r', `${MNT}/build`, full);
      btrfs('subvolume', 'delete', `${MNT}/build`);
      console.log(`built in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    }
    const entries = DIRS * FILES + DIRS;
    const live = `${MNT}/live`;
    if (existsSync(live)) btrfs('subvolume', 'delete', live);
    btrfs('subvolume', 'snapshot', full, live);
    let n = 0;
    const methods = new Set<string>();
    const tmp = (): string => `${MNT}/.tmp-${process.pid}-${n++}`;
    const fast = async (): Promise<number> => {
      const t = tmp();
      btrfs('subvolume', 'snapshot', '-r', live, t);
      try {
        let count = 0;
        const { entries: it, method } = await openDiff({ oldRoot: full, newRoot: t, ...treeSearch(), sendStream: () => driver.sendNoData(full, t) });
        methods.add(method);
        for await (const e of it) if (e) count++;
        return count;
      } finally {
        btrfs('subvolume', 'delete', t);
      }
    };
    const floor = (): void => {
      const t = tmp();
      btrfs('subvolume', 'snapshot', '-r', live, t);
      btrfs('send', '-q', '--no-data', '-p', full, '-f', '/dev/null', t);
      btrfs('subvolume', 'delete', t);
    };

    // 10 changes of different kinds.
    appendFileSync(fileOf(live, 1, 1), 'more\n');
    writeFileSync(fileOf(live, 2, 2), 'FILE 2/2\n');
    writeFileSync(fileOf(live, 3, 3), 'x'.repeat(10_000));
    unlinkSync(fileOf(live, 4, 4));
    unlinkSync(fileOf(live, 5, 5));
    writeFileSync(`${dirOf(live, 6)}/new`, 'new\n');
    renameSync(fileOf(live, 7, 7), `${dirOf(live, 8)}/moved`);
    chmodSync(fileOf(live, 9, 9), 0o600);
    execFileSync('setfattr', ['-n', 'user.bench', '-v', '1', fileOf(live, 10, 10)]);
    mkdirSync(`${dirOf(live, 11)}/newdir`);
    const c10 = await fast();
    console.log(`\n== ${entries} entries, 10 changes (${c10} entries)`);
    const f10 = await time(RUNS, fast);
    const fl10 = await time(RUNS, floor);
    row(`zomg (ro snapshot + ${[...methods].join('/')} path + verify + delete)`, f10);
    row('floor (ro snapshot + send --no-data + delete)', fl10);
    console.log(`  ratio zomg / floor ${(f10 / fl10).toFixed(2)}×`);

    // 100,000 changes: 100 files of every directory rewritten (same size, other bytes).
    const per = Math.ceil(100_000 / DIRS);
    for (let d = 0; d < DIRS; d++) for (let f = 100; f < 100 + per; f++) writeFileSync(fileOf(live, d, f), `FILE ${d}/${f}\n`);
    execFileSync('sync');
    methods.clear();
    const c100k = await fast();
    console.log(`\n== ${entries} entries, ${per * DIRS} more changes (${c100k} entries)`);
    const runs = Math.max(2, Math.floor(RUNS / 2));
    const f100k = await time(runs, fast);
    const fl100k = await time(runs, floor);
    row(`zomg (ro snapshot + ${[...methods].join('/')} path + verify + delete)`, f100k);
    row('floor (ro snapshot + send --no-data + delete)', fl100k);
    console.log(`  ratio zomg / floor ${(f100k / fl100k).toFixed(2)}×`);

    // A million changes: the whole tree against the empty subvolume it grew from, and the
    // other way round, each streamed into diff status --json's writer in a child process.
    millionCase('every path added', empty, full);
    millionCase('every path removed', full, empty);
  } finally {
    if (existsSync(`${MNT}/live`)) btrfs('subvolume', 'delete', `${MNT}/live`);
    execFileSync('umount', [MNT]);
  }
}

if (process.argv[2] === '--child') await child(process.argv[3] as string, process.argv[4] as string);
else await main();
