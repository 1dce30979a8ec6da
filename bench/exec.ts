/**
 * Exec latency into a running box: `execInBox(['true'])` (nsenter into the box's init)
 * against a fresh sandbox for the same command, `bwrap --bind ROOT / --proc /proc --dev
 * /dev --unshare-pid true`, both spawned from Node the same way. Target: ratio ≤ 2.
 * Also shown: nsenter spawned bare (the floor of the mechanism) and the box's start time.
 * Run as root: node dist/bench/exec.js [runs]
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { boxEnvironment } from '../src/runtime/environment.js';
import { execInBox, startBox, stopBox, type BoxSpec } from '../src/runtime/sandbox.js';
import { busyboxRootfsTar } from '../tests/helpers/fixtures.js';
import { makeTestPool } from '../tests/helpers/pool.js';
import { median, ratio, report, spawnWait, timedExit as timed } from './lib.js';

const RUNS = Number(process.argv[2] ?? 51);

const pool = makeTestPool(512);
const runDir = mkdtempSync(join(tmpdir(), 'zomg-bench-exec-'));
try {
  const root = join(pool.mnt, 'box');
  execFileSync('btrfs', ['subvolume', 'create', root], { stdio: 'ignore' });
  execFileSync('tar', ['--numeric-owner', '-xpf', busyboxRootfsTar(), '-C', root]);
  const spec: BoxSpec = {
    id: 'bench',
    root,
    hostname: 'bench.proj',
    env: boxEnvironment({ project: 'proj', box: 'bench', apiUrl: 'http://127.0.0.1:7070' }),
    volumes: [],
    runDir,
  };

  const t0 = performance.now();
  const { pid } = await startBox(spec);
  const startMs = performance.now() - t0;

  const viaExec = (): Promise<number> => execInBox(runDir, { command: ['true'], stdin: 'ignore', stdout: 'ignore', stderr: 'ignore' }).exited;
  const viaBwrap = (): Promise<number> => spawnWait('bwrap', ['--bind', root, '/', '--proc', '/proc', '--dev', '/dev', '--unshare-pid', 'true']);
  const viaNsenter = (): Promise<number> => spawnWait('nsenter', ['--target', String(pid), '--pid', '--mount', '--uts', '--ipc', '--root', 'true']);

  for (let i = 0; i < 5; i++) {
    await timed(viaExec);
    await timed(viaBwrap);
    await timed(viaNsenter);
  }
  // Interleaved, so drift in the machine's load hits all three alike.
  const exec: number[] = [];
  const bwrap: number[] = [];
  const nsenter: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    exec.push(await timed(viaExec));
    bwrap.push(await timed(viaBwrap));
    nsenter.push(await timed(viaNsenter));
  }
  const e = median(exec);
  const b = median(bwrap);
  report(`exec latency into a running busybox box (median of ${RUNS}, spawned from Node)`, [
    ["execInBox(['true'])", e],
    ['raw bwrap --bind ROOT / --proc /proc --dev /dev --unshare-pid true', b],
    ['bare nsenter -t INIT -p -m -u -i -r true (the floor)', median(nsenter)],
    ['ratio execInBox / raw bwrap', ratio(e, b)],
    ['target', e <= 2 * b ? 'met (<= 2x)' : 'MISSED (> 2x)'],
    ['startBox (cold, once)', startMs],
  ]);
} finally {
  try {
    await stopBox(runDir);
  } finally {
    pool.cleanup();
    rmSync(runDir, { recursive: true, force: true });
  }
}
