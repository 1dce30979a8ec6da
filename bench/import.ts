/**
 * `zomg base import` of a Debian rootfs .tar.zst vs plain GNU `tar -x` of the same archive
 * into an empty subvolume of the same pool (target: ≥ 0.8× tar's throughput).
 * The archive is built once with mmdebstrap and cached in /var/tmp/zomg-bench.
 * Run: node dist/bench/import.js
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { benchEngine, median, ratio, report } from './lib.js';

const CACHE = '/var/tmp/zomg-bench';
const ARCHIVE = join(CACHE, 'debian-bookworm-minbase.tar.zst');
if (!existsSync(ARCHIVE)) {
  mkdirSync(CACHE, { recursive: true });
  console.log('building a Debian rootfs with mmdebstrap (once)…');
  execFileSync('mmdebstrap', ['--variant=minbase', '--quiet', 'bookworm', `${ARCHIVE}.tmp.tar.zst`, 'http://deb.debian.org/debian'], { stdio: 'inherit' });
  execFileSync('mv', [`${ARCHIVE}.tmp.tar.zst`, ARCHIVE]);
}

const RUNS = 7;
const env = await benchEngine(8192);
try {
  const sync = () => execFileSync('sync');
  const tarTimes: number[] = [];
  const importTimes: number[] = [];
  // Interleaved, so both see the same state of the pool and of the machine.
  for (let i = 0; i < RUNS; i++) {
    const dest = join(env.pool.mnt, 'staging', `tar-${i}`);
    execFileSync('btrfs', ['subvolume', 'create', dest], { stdio: 'ignore' });
    sync();
    let t0 = performance.now();
    execFileSync('tar', ['--numeric-owner', '-p', '--xattrs', '--xattrs-include=*', '--acls', '-I', 'zstd', '-xf', ARCHIVE, '-C', dest]);
    sync();
    tarTimes.push(performance.now() - t0);
    t0 = performance.now();
    await env.engine.importBase('debian', ARCHIVE);
    sync();
    importTimes.push(performance.now() - t0);
  }
  const tarTime = median(tarTimes);
  const importTime = median(importTimes);
  const mb = statSync(ARCHIVE).size / 1024 / 1024;
  report(`base import of ${mb.toFixed(1)} MiB .tar.zst (median of ${RUNS} interleaved runs, each followed by sync)`, [
    ['plain tar -x into an empty subvolume', tarTime],
    ['zomg base import (engine call)', importTime],
    ['throughput ratio import / tar (target >= 0.8)', ratio(tarTime, importTime)],
  ]);
} finally {
  await env.cleanup();
}
