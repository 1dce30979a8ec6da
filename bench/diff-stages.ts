/**
 * Where the diff's time goes, stage by stage, on the bench/diff.ts tree (1000 dirs × 100
 * files) with 10 and with 10,000 changes: ro snapshot, `btrfs send --no-data` alone, send +
 * parse, send + parse + replay, verify alone (from the replayed candidates), and the sort.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/diff-stages.js
 *   BENCH_DIRS=200 node dist/bench/diff-stages.js
 *   node dist/bench/diff-stages.js OLD NEW    (two read-only snapshots on a btrfs mount,
 *                                             e.g. the pair BENCH_KEEP=1 diff-pkg.js keeps)
 *
 * Needs root. The pool is always removed at the end.
 */
import { execFileSync } from 'node:child_process';
import { appendFileSync, chmodSync, existsSync, mkdirSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { SendStreamParser } from '../src/storage/sendstream.js';
import { SendReplay, type Candidate } from '../src/storage/diff/replay.js';
import { verifyCandidates } from '../src/storage/diff/sorted.js';
import { BtrfsDriver } from '../src/storage/btrfs.js';
import { run } from '../src/system/run.js';
import { isRoot, makeTestPool, type TestPool } from '../tests/helpers/pool.js';
import { timeMs } from './lib.js';

const driver = new BtrfsDriver();
const DIRS = Number(process.env.BENCH_DIRS ?? 1000);
const FILES = 100;
const RUNS = Number(process.env.BENCH_RUNS ?? 7);
const btrfs = (...args: string[]): Promise<unknown> => run('btrfs', args);
const dirOf = (root: string, d: number): string => `${root}/d${String(d).padStart(4, '0')}`;
const fileOf = (root: string, d: number, f: number): string => `${dirOf(root, d)}/f${String(f).padStart(3, '0')}`;

const timed = (fn: () => Promise<unknown>): Promise<number> => timeMs(RUNS, fn);

async function replayOf(old: string, now: string, parse: boolean, replay: boolean): Promise<Candidate[]> {
  const parser = new SendStreamParser();
  const r = new SendReplay();
  for await (const chunk of driver.sendNoData(old, now) as AsyncIterable<Buffer>) {
    if (!parse) continue;
    for (const c of parser.push(chunk)) if (replay) r.apply(c);
  }
  return replay ? r.finish() : [];
}

async function stages(label: string, mnt: string, old: string, now: string): Promise<void> {
  const candidates = await replayOf(old, now, true, true);
  const snap = await timed(async () => {
    await btrfs('subvolume', 'snapshot', '-r', now, `${mnt}/.t`);
    await btrfs('subvolume', 'delete', `${mnt}/.t`);
  });
  const send = await timed(() => btrfs('send', '-q', '--no-data', '-p', old, '-f', '/dev/null', now));
  const pipe = await timed(() => replayOf(old, now, false, false));
  const parse = await timed(() => replayOf(old, now, true, false));
  const replay = await timed(() => replayOf(old, now, true, true));
  const verify = await timed(() => verifyCandidates(candidates, old, now));
  const entries = await verifyCandidates(candidates, old, now);
  const sort = await timed(async () => [...entries].sort((a, b) => Buffer.compare(a.path, b.path)));
  console.log(`\n== ${label}: ${candidates.length} candidates, ${entries.length} entries`);
  const row = (k: string, v: number): void => console.log(`  ${k.padEnd(52)} ${v.toFixed(1).padStart(8)} ms`);
  row('ro snapshot + delete (anchor for the live snapshot)', snap);
  row('btrfs send --no-data > /dev/null', send);
  row('send piped into node (no parsing)', pipe);
  row('send + parse', parse);
  row('send + parse + replay', replay);
  row('verify (lstat, compare, xattrs, sort)', verify);
  row('  of which: sort of the entries', sort);
  console.log(`  ratios to the raw send: pipe ${(pipe / send).toFixed(2)}×, parse ${(parse / send).toFixed(2)}×, replay ${(replay / send).toFixed(2)}×, verify ${(verify / send).toFixed(2)}×`);
}

async function main(): Promise<void> {
  if (!isRoot()) {
    console.log('bench/diff-stages: needs root; skipped');
    return;
  }
  const [old, now] = process.argv.slice(2);
  if (old !== undefined && now !== undefined) {
    const mnt = execFileSync('findmnt', ['-n', '-o', 'TARGET', '-T', now]).toString().trim();
    await stages(`${old} → ${now}`, mnt, old, now);
    return;
  }
  let pool: TestPool | undefined;
  try {
    pool = makeTestPool(4096);
    const mnt = pool.mnt;
    const live = `${mnt}/big`;
    await btrfs('subvolume', 'create', live);
    for (let d = 0; d < DIRS; d++) {
      mkdirSync(dirOf(live, d));
      for (let f = 0; f < FILES; f++) writeFileSync(fileOf(live, d, f), `file ${d}/${f}\n`);
    }
    execFileSync('sync');
    await btrfs('subvolume', 'snapshot', '-r', live, `${mnt}/s0`);
    const d = (k: number): number => (7 + k * 97) % DIRS;
    appendFileSync(fileOf(live, d(0), 1), 'more\n');
    writeFileSync(fileOf(live, d(1), 2), `FILE ${d(1)}/2\n`);
    writeFileSync(fileOf(live, d(2), 3), 'x'.repeat(10_000));
    unlinkSync(fileOf(live, d(3), 4));
    unlinkSync(fileOf(live, d(4), 5));
    writeFileSync(`${dirOf(live, d(5))}/new`, 'new\n');
    renameSync(fileOf(live, d(6), 6), `${dirOf(live, d(7))}/moved`);
    chmodSync(fileOf(live, d(8), 7), 0o600);
    execFileSync('setfattr', ['-n', 'user.bench', '-v', '1', fileOf(live, d(9), 8)]);
    mkdirSync(`${dirOf(live, d(10))}/newdir`);
    await btrfs('subvolume', 'snapshot', '-r', live, `${mnt}/s1`);
    await stages('10 changes', mnt, `${mnt}/s0`, `${mnt}/s1`);
    for (let dd = 0; dd < Math.min(100, DIRS); dd++) for (let f = 0; f < FILES; f++) if (existsSync(fileOf(live, dd, f))) writeFileSync(fileOf(live, dd, f), `FILE ${dd}/${f}\n`);
    await btrfs('subvolume', 'snapshot', '-r', live, `${mnt}/s2`);
    await stages('10,010 changes', mnt, `${mnt}/s0`, `${mnt}/s2`);
  } finally {
    pool?.cleanup();
  }
}

await main();
