/**
 * `zomg base build` end to end vs `podman build` alone of the same Dockerfile (the same
 * flags zomg passes, in the same store: the anchor), target ≤ 1.5×. Measured for the CLI in
 * local mode (node start-up and engine open included) and for the engine call with each
 * hand-over path: the btrfs snapshot of podman's layer (the default where it applies) and
 * export | tar. Two Dockerfiles: a busybox rootfs, and the same plus 20k files written by a
 * RUN step (the export path grows with the tree, the snapshot path does not).
 * Podman's storage is zomg's store inside a throw-away pool, never the host's.
 * Run as root: node dist/bench/base-build.js [runs]
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { podmanStoreFor } from '../src/engine/builds.js';
import { createEngine } from '../src/engine/engine.js';
import { busyboxRootfsTar } from '../tests/helpers/fixtures.js';
import { benchEngine, median, ratio, report } from './lib.js';

const RUNS = Number(process.argv[2] ?? 5);
const MAIN = fileURLToPath(new URL('../bundle/cli/zomg.cjs', import.meta.url));

const env = await benchEngine();
const work = mkdtempSync(join(tmpdir(), 'zomg-bench-base-build-'));
const store = podmanStoreFor(env.pool.mnt);
const podman = (...args: string[]): string =>
  execFileSync('podman', ['--root', store.podmanRoot ?? '', '--runroot', store.podmanRunroot ?? '', '--storage-driver', 'btrfs', ...args], { encoding: 'utf8' });
try {
  const exportEngine = await createEngine({ stateDir: env.stateDir, poolPath: env.pool.mnt, onSizesPending: () => undefined, buildHandover: 'export' });
  const variants = {
    busybox: 'FROM scratch\nADD rootfs.tar /\nRUN echo built > /built\nENV FOO=bar\nWORKDIR /work\nCMD ["/bin/sh"]\n',
    '20k files': 'FROM scratch\nADD rootfs.tar /\nRUN mkdir /many && cd /many && i=0 && while [ $i -lt 200 ]; do mkdir d$i && j=0 && while [ $j -lt 100 ]; do echo $j > d$i/f$j; j=$((j+1)); done; i=$((i+1)); done\n',
  };
  for (const [label, dockerfile] of Object.entries(variants)) {
    const ctx = join(work, label.replace(/\W/g, '-'));
    mkdirSync(ctx);
    execFileSync('cp', [busyboxRootfsTar(), join(ctx, 'rootfs.tar')]);
    writeFileSync(join(ctx, 'Dockerfile'), dockerfile);

    /** The same `podman build` zomg runs, alone. */
    const raw = (): void => {
      podman('build', '-q', '--platform', 'linux/amd64', '--isolation', 'chroot', '--network', 'host', '--pull=missing', '--layers=false', '--force-rm', '-t', 'bench-raw:latest', '-f', join(ctx, 'Dockerfile'), ctx);
      podman('rmi', 'bench-raw:latest');
    };
    const cli = (): void => {
      execFileSync(process.execPath, [MAIN, 'base', 'build', 'bench-cli', ctx, '--builder', 'podman'], {
        env: { ...process.env, ZOMG_HOME: env.stateDir, ZOMG_POOL_PATH: env.pool.mnt, ZOMG_NO_SIZE_WORKER: '1' },
        stdio: 'ignore',
      });
    };
    const viaSnapshot = () => env.engine.buildBase('bench-snap', { context: ctx, builder: 'podman' });
    const viaExport = () => exportEngine.buildBase('bench-export', { context: ctx, builder: 'podman' });

    const steps: Array<[string, () => unknown]> = [['raw', raw], ['cli', cli], ['snapshot', viaSnapshot], ['export', viaExport]];
    const times: Record<string, number[]> = { raw: [], cli: [], snapshot: [], export: [] };
    for (const [, fn] of steps) await fn(); // warm-up: page cache, podman's first use of its store
    // Interleaved, so drift in the machine's state hits every variant alike.
    for (let i = 0; i < RUNS; i++) {
      for (const [key, fn] of steps) {
        const t0 = performance.now();
        await fn();
        (times[key] as number[]).push(performance.now() - t0);
      }
    }
    const m = (k: string): number => median(times[k] as number[]);
    const verdict = (x: number): string => `${ratio(x, m('raw'))} ${x / m('raw') <= 1.5 ? 'met' : 'MISSED'}`;
    report(`zomg base build, Dockerfile FROM scratch + ADD busybox rootfs + RUN (${label}), medians of ${RUNS}`, [
      ['podman build alone (the flags zomg passes)', m('raw')],
      ['zomg base build, CLI in local mode (auto: snapshot)', m('cli')],
      ['zomg engine buildBase, snapshot hand-over', m('snapshot')],
      ['zomg engine buildBase, export | tar hand-over', m('export')],
      ['ratio CLI / podman build (target <= 1.5)', verdict(m('cli'))],
      ['ratio engine snapshot / podman build (target <= 1.5)', verdict(m('snapshot'))],
      ['ratio engine export / podman build', verdict(m('export'))],
    ]);
  }
  const left = podman('images', '-a', '-q').trim() + podman('ps', '-a', '--external', '-q').trim();
  console.log(`  images or containers left behind: ${left === '' ? 'none' : left}`);
  await exportEngine.close();
} finally {
  try {
    podman('rmi', '-a', '-f');
  } finally {
    rmSync(store.podmanRunroot ?? '', { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
    await env.cleanup();
  }
}
