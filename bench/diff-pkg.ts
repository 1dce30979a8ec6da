/**
 * The diff of a real package install: a Debian bookworm minbase (mmdebstrap, cached in
 * /var/tmp/zomg-bench like bench/import.ts), a box, a snapshot, `apt-get install python3`
 * and `rm -rf /usr/share/doc/*` in the box. The .debs and apt lists are fetched from the
 * mirror once and cached, so later runs install the same packages offline.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/diff-pkg.js
 *
 * Prints, from one run: whole-process `zomg diff status` (also with ZOMG_BTRFS_PROGS=1:
 * btrfs-progs in place of zomg's own ioctls) against its floor (ro snapshot +
 * `btrfs send --no-data` + delete, plus `node -e 0`), warm `rsync -rlpgoDXcn` of the same
 * two trees, and `zomg diff status --to` between two snapshots against `snapper status`
 * on the same pair when snapper is installed, and against the send of that pair plus
 * `node -e 0` (what any program must spend that runs `btrfs send` from a fresh Node); then
 * 10 files written since that snapshot, whole process against its floor + `node -e 0` (a small
 * diff, where start-up is most of the time). Needs root; the pool is removed at the end
 * (BENCH_KEEP=1: built, then kept for profiling by hand, and its environment printed).
 * BENCH_BASELINE=<another build's dist/bundle/cli/zomg.cjs> times that build beside this one
 * in the same rounds: the only fair comparison on a noisy machine.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { isRoot, makeTestPool } from '../tests/helpers/pool.js';
import { median } from './lib.js';

// What `bin` runs (npm run build makes it): the whole-process numbers are a user's.
const MAIN = fileURLToPath(new URL('../bundle/cli/zomg.cjs', import.meta.url));
const CACHE = '/var/tmp/zomg-bench';
const ARCHIVE = join(CACHE, 'debian-bookworm-minbase.tar.zst');
const APT_CACHE = join(CACHE, 'apt-python3');
const RUNS = Number(process.env.BENCH_RUNS ?? 7);
/** Another build's `zomg.cjs` (say, of an earlier commit), timed in the same rounds on the same trees. */
const BASELINE = process.env.BENCH_BASELINE;
const INSTALL = 'DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3';

type Timing = { median: number; min: number; max: number };

/**
 * Runs each function once per round, in order, for `runs` rounds (after one warm-up
 * round): every contender sees the same background (btrfs's cleaner deleting the
 * snapshots of earlier rounds, the page cache), where timing one after the other let
 * whichever ran last pay for the others' leftovers.
 */
function interleaved<K extends string>(contenders: { [P in K]?: () => void }, runs = RUNS): Record<K, Timing> {
  const fns = Object.fromEntries(Object.entries(contenders).filter(([, fn]) => fn !== undefined)) as Record<K, () => void>;
  const names = Object.keys(fns) as K[];
  for (const n of names) fns[n]();
  const ms = Object.fromEntries(names.map((n) => [n, [] as number[]])) as Record<K, number[]>;
  for (let i = 0; i < runs; i++) {
    for (const n of names) {
      const t = performance.now();
      fns[n]();
      ms[n].push(performance.now() - t);
    }
  }
  return Object.fromEntries(names.map((n) => [n, { median: median(ms[n]), min: Math.min(...ms[n]), max: Math.max(...ms[n]) }])) as Record<K, Timing>;
}
const fmt = (t: Timing): string => `${t.median.toFixed(0).padStart(6)} ms (min ${t.min.toFixed(0)}, max ${t.max.toFixed(0)})`;

async function main(): Promise<void> {
  if (!isRoot()) {
    console.log('bench/diff-pkg: needs root; skipped');
    return;
  }
  if (!existsSync(ARCHIVE)) {
    mkdirSync(CACHE, { recursive: true });
    console.log('building a Debian rootfs with mmdebstrap (once)…');
    execFileSync('mmdebstrap', ['--variant=minbase', '--quiet', 'bookworm', `${ARCHIVE}.tmp.tar.zst`, 'http://deb.debian.org/debian'], { stdio: 'inherit' });
    execFileSync('mv', [`${ARCHIVE}.tmp.tar.zst`, ARCHIVE]);
  }
  const pool = makeTestPool(8192);
  const stateDir = mkdtempSync(join(tmpdir(), 'zomg-bench-pkg-'));
  const env: NodeJS.ProcessEnv = { ...process.env, ZOMG_HOME: stateDir, ZOMG_POOL_PATH: pool.mnt, ZOMG_PROJECT: 'bench', ZOMG_NO_SIZE_WORKER: '1' };
  for (const k of ['ZOMG_URL', 'ZOMG_API_URL', 'ZOMG_PROFILE']) delete env[k];
  // NODE_EXTRA_CA_CERTS (set in some environments, this one included) makes every Node start
  // parse a CA bundle before any of its code runs: ~90 ms of zomg's time and of `node -e 0`,
  // none of snapper's. The timed Node processes run without it, as bench/cli-start.ts's do;
  // what it adds is printed apart.
  const caCerts = env.NODE_EXTRA_CA_CERTS;
  delete env.NODE_EXTRA_CA_CERTS;
  let keep = false;
  // Started as a user starts it: the file itself, through its shebang.
  env.PATH = `${dirname(process.execPath)}:${env.PATH ?? ''}`;
  const zomgWith = (extra: NodeJS.ProcessEnv, ...args: string[]): string => {
    const r = spawnSync(extra.BENCH_MAIN ?? MAIN, args, { env: { ...env, ...extra }, encoding: 'utf8', timeout: 900_000, maxBuffer: 256 * 1024 * 1024 });
    if (r.status !== 0) throw new Error(`zomg ${args.join(' ')} failed: ${r.stderr}`);
    return r.stdout;
  };
  const zomg = (...args: string[]): string => zomgWith({}, ...args);
  try {
    zomg('base', 'import', 'deb', '--file', ARCHIVE);
    const id = (JSON.parse(zomg('create', 'pkg', '--base', 'deb', '--json')) as { id: string }).id;
    const root = join(pool.mnt, 'roots', id);
    if (!existsSync(join(APT_CACHE, 'lists'))) {
      console.log('fetching the python3 packages from the mirror (once)…');
      zomg('exec', 'pkg', '--', 'bash', '-c', `apt-get update -q && ${INSTALL} --download-only`);
      mkdirSync(APT_CACHE, { recursive: true });
      cpSync(join(root, 'var/lib/apt/lists'), join(APT_CACHE, 'lists.tmp'), { recursive: true });
      cpSync(join(root, 'var/cache/apt/archives'), join(APT_CACHE, 'archives'), { recursive: true });
      execFileSync('mv', [join(APT_CACHE, 'lists.tmp'), join(APT_CACHE, 'lists')]);
    } else {
      cpSync(join(APT_CACHE, 'lists'), join(root, 'var/lib/apt/lists'), { recursive: true });
      cpSync(join(APT_CACHE, 'archives'), join(root, 'var/cache/apt/archives'), { recursive: true });
    }
    zomg('snapshot', 'create', 'pkg');
    zomg('exec', 'pkg', '--', 'bash', '-c', `${INSTALL} && rm -rf /usr/share/doc/*`);
    execFileSync('sync');
    const v0 = join(pool.mnt, 'checkpoints', id, 'v0');
    if (!existsSync(v0)) throw new Error(`no snapshot at ${v0}`);
    if (process.env.BENCH_KEEP === '1') {
      // For profiling by hand: leave the pool and state as they are, print how to reach them.
      keep = true;
      console.log(`kept: ZOMG_HOME=${stateDir} ZOMG_POOL_PATH=${pool.mnt} ZOMG_PROJECT=bench ZOMG_NO_SIZE_WORKER=1 (box pkg, snapshot v0); remove with: zomg stop pkg; umount -l ${pool.mnt}; rm -rf ${pool.dir} ${stateDir}`);
      return;
    }
    const lines = zomg('diff', 'status', 'pkg').trim().split('\n');
    const entries = Number(execFileSync('bash', ['-c', `find ${root} -xdev | wc -l`]).toString().trim());
    console.log(`\n== apt-get install python3 + rm -rf /usr/share/doc/*: ${lines.length} changed paths of ${entries}`);

    const tmp = join(pool.mnt, 'staging', 'bench-floor');
    mkdirSync(join(pool.mnt, 'staging'), { recursive: true });
    const t = interleaved({
      floor: () => {
        execFileSync('btrfs', ['subvolume', 'snapshot', '-r', root, tmp], { stdio: 'ignore' });
        execFileSync('btrfs', ['send', '-q', '--no-data', '-p', v0, '-f', '/dev/null', tmp]);
        execFileSync('btrfs', ['subvolume', 'delete', tmp], { stdio: 'ignore' });
      },
      nodeStart: () => execFileSync(process.execPath, ['-e', '0'], { env }),
      ours: () => zomg('diff', 'status', 'pkg'),
      oursJson: () => zomg('diff', 'status', 'pkg', '--json'),
      // The same with btrfs-progs in place of zomg's own ioctls (the addon's gain).
      oursProgs: () => zomgWith({ ZOMG_BTRFS_PROGS: '1' }, 'diff', 'status', 'pkg'),
      ...(BASELINE ? { baseline: () => zomgWith({ BENCH_MAIN: BASELINE }, 'diff', 'status', 'pkg') } : {}),
      rsync: () => execFileSync('rsync', ['-rlpgoDXcn', '--delete', '--out-format=%n', `${v0}/`, `${root}/`], { maxBuffer: 256 * 1024 * 1024 }),
    });
    const { floor, nodeStart, ours, oursJson, oursProgs, rsync } = t;
    const baseline = t.baseline as Timing | undefined;
    const anchor = floor.median + nodeStart.median;
    console.log(`zomg diff status (whole process, local)                 ${fmt(ours)}`);
    console.log(`zomg diff status --json                                 ${fmt(oursJson)}`);
    console.log(`zomg diff status, ZOMG_BTRFS_PROGS=1 (btrfs processes)  ${fmt(oursProgs)}`);
    if (baseline) console.log(`the same, BENCH_BASELINE's build                        ${fmt(baseline)}`);
    console.log(`floor: ro snapshot + send --no-data + delete            ${fmt(floor)}`);
    console.log(`  node -e 0                                             ${fmt(nodeStart)}`);
    console.log(`rsync -rlpgoDXcn --delete (warm), same two trees        ${fmt(rsync)}`);
    console.log(`ratios: zomg / (floor + node) ${(ours.median / anchor).toFixed(2)}×, rsync / zomg ${(rsync.median / ours.median).toFixed(2)}×`);

    // Two snapshots: zomg --to against snapper on the same pair, and against what any
    // program that runs `btrfs send` from a fresh Node process must spend: the send of the
    // pair plus `node -e 0`.
    zomg('snapshot', 'create', 'pkg');
    const v1 = join(pool.mnt, 'checkpoints', id, 'v1');
    const toPair = (): void => void zomg('diff', 'status', 'pkg', '--against', 'v0', '--to', 'v1');
    const sendPair = (): void => void execFileSync('btrfs', ['send', '-q', '--no-data', '-p', v0, '-f', '/dev/null', v1]);
    const snapper = snapperPair(pool.mnt, v0, v1);
    const fns: Record<string, () => void> = { to: toPair, send: sendPair, node: () => void execFileSync(process.execPath, ['-e', '0'], { env }) };
    if (snapper) fns.snap = snapper;
    const pair = interleaved(fns) as Record<'to' | 'send' | 'node', Timing> & { snap?: Timing };
    const toFloor = pair.send.median + pair.node.median;
    console.log(`zomg diff status --against v0 --to v1 (whole process)   ${fmt(pair.to)}`);
    console.log(`  send --no-data of the pair                            ${fmt(pair.send)}`);
    console.log(`  node -e 0                                             ${fmt(pair.node)}`);
    console.log(`ratio: zomg --to / (send + node) ${(pair.to.median / toFloor).toFixed(2)}×`);
    if (pair.snap) {
      console.log(`snapper status 1..2, same pair (no cached filelist)     ${fmt(pair.snap)}`);
      console.log(`ratio: zomg --to / snapper ${(pair.to.median / pair.snap.median).toFixed(2)}×, (send + node) / snapper ${(toFloor / pair.snap.median).toFixed(2)}× (interleaved rounds)`);
    }
    if (caCerts !== undefined) {
      const withCa = { ...env, NODE_EXTRA_CA_CERTS: caCerts };
      const ca = interleaved({
        to: () => void zomgWith({ NODE_EXTRA_CA_CERTS: caCerts }, 'diff', 'status', 'pkg', '--against', 'v0', '--to', 'v1'),
        node: () => void execFileSync(process.execPath, ['-e', '0'], { env: withCa }),
      });
      console.log(`with NODE_EXTRA_CA_CERTS as set here (every Node start parses ${caCerts}):`);
      console.log(`  zomg diff status --against v0 --to v1                 ${fmt(ca.to)}`);
      console.log(`  node -e 0                                             ${fmt(ca.node)}`);
    }

    // The same box, 10 files written since v1 (the newest snapshot): a whole process where
    // start-up, not the diff, is most of the time.
    for (let i = 0; i < 10; i++) writeFileSync(join(root, 'etc', `bench-small-${i}`), `${i}\n`);
    const small = interleaved({
      ours: () => void zomg('diff', 'status', 'pkg'),
      ...(BASELINE ? { baseline: () => void zomgWith({ BENCH_MAIN: BASELINE }, 'diff', 'status', 'pkg') } : {}),
      floor: () => {
        execFileSync('btrfs', ['subvolume', 'snapshot', '-r', root, tmp], { stdio: 'ignore' });
        execFileSync('btrfs', ['send', '-q', '--no-data', '-p', v1, '-f', '/dev/null', tmp]);
        execFileSync('btrfs', ['subvolume', 'delete', tmp], { stdio: 'ignore' });
      },
      node: () => void execFileSync(process.execPath, ['-e', '0'], { env }),
    });
    console.log(`\n== 10 files written since v1`);
    console.log(`zomg diff status (whole process, local)                 ${fmt(small.ours)}`);
    const smallBaseline = small.baseline as Timing | undefined;
    if (smallBaseline) console.log(`the same, BENCH_BASELINE's build                        ${fmt(smallBaseline)}`);
    console.log(`floor: ro snapshot + send --no-data + delete            ${fmt(small.floor)}`);
    console.log(`  node -e 0                                             ${fmt(small.node)}`);
    console.log(`ratio: zomg / (floor + node) ${(small.ours.median / (small.floor.median + small.node.median)).toFixed(2)}×`);
  } finally {
    if (!keep) {
      try {
        zomg('stop', 'pkg');
      } catch {
        // not running
      }
      pool.cleanup();
      rmSync(stateDir, { recursive: true, force: true });
    }
  }
}

/**
 * snapper compares two of its own snapshots of a config's subvolume: give it a subvolume
 * whose .snapshots/1 and /2 are snapshots of the same two trees. Returns one timed run of
 * `snapper status 1..2` (its cached file lists removed first), or undefined when snapper
 * cannot run here.
 */
function snapperPair(mnt: string, one: string, two: string): (() => void) | undefined {
  if (spawnSync('snapper', ['--version']).status !== 0) {
    console.log('snapper is not installed (./dev.sh bench installs it): skipped');
    return undefined;
  }
  const template = '/usr/share/snapper/config-templates/default';
  const sub = join(mnt, 'snapper-sub');
  try {
    execFileSync('btrfs', ['subvolume', 'create', sub], { stdio: 'ignore' });
    execFileSync('btrfs', ['subvolume', 'create', join(sub, '.snapshots')], { stdio: 'ignore' });
    for (const [n, from] of [['1', one], ['2', two]] as const) {
      mkdirSync(join(sub, '.snapshots', n));
      execFileSync('btrfs', ['subvolume', 'snapshot', '-r', from, join(sub, '.snapshots', n, 'snapshot')], { stdio: 'ignore' });
      execFileSync('bash', ['-c', `printf '<?xml version="1.0"?>\\n<snapshot><type>single</type><num>${n}</num><date>2026-01-01 00:00:0${n}</date><cleanup></cleanup></snapshot>\\n' > ${join(sub, '.snapshots', n, 'info.xml')}`]);
    }
    mkdirSync(join(mnt, 'etc/snapper/configs'), { recursive: true });
    mkdirSync(join(mnt, 'etc/default'), { recursive: true });
    execFileSync('bash', ['-c', `sed -e 's|^SUBVOLUME=.*|SUBVOLUME="/snapper-sub"|' -e 's|^FSTYPE=.*|FSTYPE="btrfs"|' ${template} > ${mnt}/etc/snapper/configs/pkg && echo 'SNAPPER_CONFIGS="pkg"' > ${mnt}/etc/default/snapper`]);
    const snapper = (): void => {
      for (const n of ['1', '2']) for (const f of readdirSync(join(sub, '.snapshots', n))) if (f.startsWith('filelist-')) rmSync(join(sub, '.snapshots', n, f));
      execFileSync('snapper', ['--no-dbus', `--root=${mnt}`, '-c', 'pkg', 'status', '1..2'], { maxBuffer: 256 * 1024 * 1024 });
    };
    snapper();
    return snapper;
  } catch (err) {
    console.log(`snapper did not work here: ${err instanceof Error ? err.message : String(err)}`);
    return undefined;
  }
}

await main();
