/**
 * What the default profile (capabilities, seccomp, no_new_privs, own network through
 * slirp4netns, own cgroup) costs, against a privileged box (the mechanism without the
 * profile: host network, no filter) and against podman (runc):
 *   1. exec latency into a running box (`true`), interleaved;
 *   2. create + first exec: start a box, exec `true`, stop it, vs `podman run --rm --rootfs`;
 *   3. outbound throughput: the box downloads a ~21 MB .deb from the Debian mirror with
 *      busybox wget, vs the host's wget of the same URL.
 * Run as root: node dist/bench/boundary.js [runs]
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_BOX_CONFIG } from '../src/core/limits.js';
import { boxEnvironment } from '../src/runtime/environment.js';
import { execInBox, startBox, stopBox, type BoxSpec } from '../src/runtime/sandbox.js';
import { busyboxRootfsTar } from '../tests/helpers/fixtures.js';
import { makeTestPool } from '../tests/helpers/pool.js';
import { median, ratio, report, spawnWait, timedExit as timed } from './lib.js';

const RUNS = Number(process.argv[2] ?? 31);
const DEB_URL = 'http://deb.debian.org/debian/pool/main/l/llvm-toolchain-14/libllvm14_14.0.6-12_amd64.deb';

const pool = makeTestPool(1024);
const scratch = mkdtempSync(join(tmpdir(), 'zomg-bench-boundary-'));
const specs: BoxSpec[] = [];
try {
  const base = join(pool.mnt, 'base');
  execFileSync('btrfs', ['subvolume', 'create', base], { stdio: 'ignore' });
  execFileSync('tar', ['--numeric-owner', '-xpf', busyboxRootfsTar(), '-C', base]);
  const makeSpec = (name: string, privileged: boolean): BoxSpec => {
    const root = join(pool.mnt, name);
    execFileSync('btrfs', ['subvolume', 'snapshot', base, root], { stdio: 'ignore' });
    const spec: BoxSpec = {
      id: `bench-${name}`,
      root,
      hostname: `${name}.bench`,
      env: boxEnvironment({ project: 'bench', box: name, apiUrl: 'http://127.0.0.1:7070' }),
      volumes: [],
      runDir: join(scratch, name),
      config: { ...DEFAULT_BOX_CONFIG, privileged },
    };
    specs.push(spec);
    return spec;
  };
  const boxed = makeSpec('boxed', false);
  const priv = makeSpec('priv', true);
  await startBox(boxed);
  const privPid = (await startBox(priv)).pid;
  // Before the profile, exec was util-linux nsenter into the init (host capabilities, no filter).
  const viaNsenter = (): Promise<number> => spawnWait('nsenter', ['--target', String(privPid), '--pid', '--mount', '--uts', '--ipc', '--root', 'true']);
  const execTrue = (spec: BoxSpec) => (): Promise<number> => execInBox(spec.runDir, { command: ['true'], stdin: 'ignore', stdout: 'ignore', stderr: 'ignore' }).exited;

  // 1. exec latency
  for (let i = 0; i < 5; i++) {
    await timed(execTrue(boxed));
    await timed(execTrue(priv));
  }
  const eBoxed: number[] = [];
  const ePriv: number[] = [];
  const eNsenter: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    eBoxed.push(await timed(execTrue(boxed)));
    ePriv.push(await timed(execTrue(priv)));
    eNsenter.push(await timed(viaNsenter));
  }
  report(`exec \`true\` into a running busybox box (median of ${RUNS}, interleaved)`, [
    ['default profile (zomg-enter: setns, caps, nnp, seccomp, cgroup)', median(eBoxed)],
    ['privileged (zomg-enter, no profile)', median(ePriv)],
    ['bare nsenter into the init (the exec of earlier versions)', median(eNsenter)],
    ['ratio default / privileged', ratio(median(eBoxed), median(ePriv))],
    ['ratio default / nsenter', ratio(median(eBoxed), median(eNsenter))],
  ]);

  // 2. create + first exec (+ stop)
  await stopBox(boxed.runDir);
  await stopBox(priv.runDir);
  const cycle = (spec: BoxSpec) => async (): Promise<number> => {
    await startBox(spec);
    const code = await execTrue(spec)();
    await stopBox(spec.runDir);
    return code;
  };
  const podmanArgs = ['run', '--rm', '--runtime', 'runc', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024', '--rootfs', base, 'true'];
  const havePodman = (await spawnWait('podman', ['--version']).catch(() => -1)) === 0;
  const cRuns = Math.max(5, Math.floor(RUNS / 3));
  const cBoxed: number[] = [];
  const cPriv: number[] = [];
  const cPodman: number[] = [];
  await timed(cycle(boxed));
  if (havePodman) await timed(() => spawnWait('podman', podmanArgs));
  for (let i = 0; i < cRuns; i++) {
    cBoxed.push(await timed(cycle(boxed)));
    cPriv.push(await timed(cycle(priv)));
    if (havePodman) cPodman.push(await timed(() => spawnWait('podman', podmanArgs)));
  }
  report(`start + first exec + stop (median of ${cRuns}, interleaved)`, [
    ['default profile (+ slirp4netns, cgroup)', median(cBoxed)],
    ['privileged', median(cPriv)],
    ...(havePodman ? ([['podman run --rm --runtime runc --rootfs ROOT true', median(cPodman)]] as Array<[string, number]>) : []),
    ['ratio default / privileged', ratio(median(cBoxed), median(cPriv))],
    ...(havePodman ? ([['ratio default / podman', ratio(median(cBoxed), median(cPodman))]] as Array<[string, string]>) : []),
  ]);

  // 3. outbound throughput (needs the mirror; skipped with a note when it is unreachable)
  await startBox(boxed);
  const tHost: number[] = [];
  const tBox: number[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      tHost.push(await timed(() => spawnWait('wget', ['-q', '-O', '/dev/null', DEB_URL])));
      tBox.push(await timed(() => execInBox(boxed.runDir, { command: ['wget', '-q', '-O', '/dev/null', DEB_URL], stdin: 'ignore', stdout: 'ignore', stderr: 'ignore' }).exited));
    }
    const mb = 21.84;
    report('download a 21.8 MB .deb from deb.debian.org (median of 3, interleaved)', [
      ['host wget (MB/s)', (mb / (median(tHost) / 1000)).toFixed(1)],
      ['box busybox wget through slirp4netns (MB/s)', (mb / (median(tBox) / 1000)).toFixed(1)],
      ['ratio box / host throughput', ratio(median(tHost), median(tBox))],
    ]);
  } catch (err) {
    console.log(`outbound throughput skipped: ${(err as Error).message}`);
  }
} finally {
  try {
    for (const spec of specs) await stopBox(spec.runDir);
  } finally {
    pool.cleanup();
    rmSync(scratch, { recursive: true, force: true });
  }
}
