/**
 * `zomg base build`'s storage half: `podman build` alone vs build + hand-over of the root
 * filesystem into a new subvolume (+ image removal), by each hand-over path: the btrfs
 * snapshot of podman's layer and the export | tar. Target: whole / build alone ≤ 1.5×.
 * Podman's storage is a private root inside a throw-away pool (never the host's).
 * Run as root: node dist/bench/build.js [runs] [rootfs.tar]   (default: a 2 MB busybox rootfs;
 * give a Debian rootfs tarball to see how the export path grows with the tree and the
 * snapshot path does not).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { BtrfsDriver } from '../src/storage/btrfs.js';
import { detectBuilder } from '../src/storage/builders.js';
import type { DetectBuilderOptions, HandoverMethod, PodmanIsolation } from '../src/storage/builders.js';
import { busyboxRootfsTar } from '../tests/helpers/fixtures.js';
import { makeTestPool } from '../tests/helpers/pool.js';

const RUNS = Number(process.argv[2] ?? 7);
const ROOTFS = process.argv[3];

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};
const ms = (v: number): string => `${v.toFixed(1)} ms`;
const row = (k: string, v: string): void => console.log(`  ${k.padEnd(62)} ${v}`);

const pool = makeTestPool(2048);
const work = mkdtempSync(join(tmpdir(), 'zomg-bench-build-'));
const driver = new BtrfsDriver();
mkdirSync(join(pool.mnt, 'staging'));
const opts = (isolation: PodmanIsolation): DetectBuilderOptions => ({
  podmanRoot: join(pool.mnt, 'staging', 'podman'),
  podmanRunroot: join(work, 'run'),
  storageDriver: 'btrfs',
  podmanIsolation: isolation,
});
const podman = (...args: string[]): string =>
  execFileSync('podman', ['--root', join(pool.mnt, 'staging', 'podman'), '--runroot', join(work, 'run'), '--storage-driver', 'btrfs', ...args], { encoding: 'utf8' });

try {
  const ctx = join(work, 'ctx');
  mkdirSync(ctx);
  execFileSync('cp', [ROOTFS ?? busyboxRootfsTar(), join(ctx, 'rootfs.tar')]);
  const sizeMb = (statSync(join(ctx, 'rootfs.tar')).size / 2 ** 20).toFixed(0);
  writeFileSync(join(ctx, 'Dockerfile'), 'FROM scratch\nADD rootfs.tar /\nRUN echo built > /built\nENV FOO=bar\nWORKDIR /work\nCMD ["/bin/sh"]\n');
  const dockerfile = join(ctx, 'Dockerfile');

  /** The same `podman build` zomg runs, alone. */
  const rawBuild = (isolation: PodmanIsolation): number => {
    const t0 = performance.now();
    podman('build', '-q', '--platform', 'linux/amd64', ...(isolation === 'chroot' ? ['--isolation', 'chroot'] : ['--runtime', 'runc']),
      '--network', 'host', '--pull=missing', '--layers=false', '-t', 'bench-raw:latest', '-f', dockerfile, ctx);
    const t = performance.now() - t0;
    podman('rmi', 'bench-raw:latest');
    return t;
  };

  interface Phases { build: number; handover: number; remove: number; whole: number }
  const zomg = async (method: HandoverMethod, i: number): Promise<Phases> => {
    const dest = join(pool.mnt, 'staging', `out-${method}-${i}`);
    const t0 = performance.now();
    const image = await (await detectBuilder('podman', opts('chroot'))).build({ name: 'bench-zomg', dockerfile, context: ctx });
    const t1 = performance.now();
    const result = await image.exportTo(dest, driver, { method });
    if (result.method !== method) throw new Error(`asked for ${method}, got ${result.method}`);
    const t2 = performance.now();
    await image.remove();
    const t3 = performance.now();
    await driver.deleteSubvolume(dest);
    return { build: t1 - t0, handover: t2 - t1, remove: t3 - t2, whole: t3 - t0 };
  };

  rawBuild('chroot'); // warm-up: page cache, podman's first-use setup of its root
  const raw: Record<PodmanIsolation, number[]> = { chroot: [], runc: [] };
  const runs: Record<HandoverMethod, Phases[]> = { snapshot: [], export: [] };
  // Interleaved, so drift in the machine's state hits every variant alike.
  for (let i = 0; i < RUNS; i++) {
    raw.chroot.push(rawBuild('chroot'));
    raw.runc.push(rawBuild('runc'));
    runs.snapshot.push(await zomg('snapshot', i));
    runs.export.push(await zomg('export', i));
  }
  const leftover = podman('images', '-a', '-q').trim() + podman('ps', '-a', '--external', '-q').trim();

  const base = median(raw.chroot);
  console.log(`\nzomg base build, storage half: Dockerfile FROM scratch + ADD ${ROOTFS ? 'rootfs' : 'busybox rootfs'} (${sizeMb} MB tar) + RUN, median of ${RUNS}`);
  row('podman build alone, --isolation chroot (what zomg runs)', ms(base));
  row('podman build alone, --runtime runc', ms(median(raw.runc)));
  for (const method of ['snapshot', 'export'] as const) {
    const p = runs[method];
    const whole = median(p.map((x) => x.whole));
    row(`zomg build + ${method} hand-over + remove: whole`, ms(whole));
    row(`  build (probe + build + inspect)`, ms(median(p.map((x) => x.build))));
    row(`  hand-over by ${method}`, ms(median(p.map((x) => x.handover))));
    row(`  remove image`, ms(median(p.map((x) => x.remove))));
    row(`  ratio whole / podman build alone (target <= 1.5)`, `${(whole / base).toFixed(2)} ${whole / base <= 1.5 ? 'met' : 'MISSED'}`);
  }
  row('images or containers left behind', leftover === '' ? 'none' : leftover);
} finally {
  try {
    podman('rmi', '-a', '-f');
  } finally {
    pool.cleanup();
    rmSync(work, { recursive: true, force: true });
  }
}
