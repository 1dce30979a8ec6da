/**
 * Exec through zomg's faces: the engine call `exec(box, ['true'])` vs a raw
 * `bwrap … true` (target ≤ 2×); the whole-process CLI `zomg exec box -- true` (target median
 * ≤ 200 ms); and `zomg create` + first exec vs `podman run --rm` of the same rootfs (recorded).
 * Run as root: node dist/bench/exec-cli.js
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { BoxName, ProjectName } from '../src/core/names.js';
import { busyboxRootfsTar } from '../tests/helpers/fixtures.js';
import { benchEngine, ratio, report, timeMs } from './lib.js';

const MAIN = fileURLToPath(new URL('../bundle/cli/zomg.cjs', import.meta.url));
const RUNS = 21;
const env = await benchEngine(2048);
const ref = (n: string) => ({ project: 'bench' as ProjectName, name: n as BoxName });
const sink = () => new Writable({ write: (_c, _e, cb) => cb() });
const podmanDir = mkdtempSync(join(tmpdir(), 'zomg-bench-podman-'));
try {
  await env.engine.importBase('bb', busyboxRootfsTar());
  const box = await env.engine.createBox(ref('box'), { base: 'bb' });
  const root = join(env.pool.mnt, 'roots', box.id);

  const engineExec = await timeMs(RUNS, () => env.engine.exec(ref('box'), { command: ['true'] }, { stdout: sink(), stderr: sink() }));
  const bwrap = await timeMs(RUNS, () => execFileSync('bwrap', ['--bind', root, '/', '--proc', '/proc', '--dev', '/dev', '--unshare-pid', 'true']));
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ZOMG_HOME: env.stateDir, ZOMG_POOL_PATH: env.pool.mnt, ZOMG_NO_SIZE_WORKER: '1' };
  // Without NODE_EXTRA_CA_CERTS (which makes every Node start parse a CA bundle), as in base-list.ts.
  delete childEnv.NODE_EXTRA_CA_CERTS;
  const cli = await timeMs(RUNS, () => execFileSync(process.execPath, [MAIN, 'exec', 'bench:box', '--', 'true'], { env: childEnv }));
  const nodeFloor = await timeMs(RUNS, () => execFileSync(process.execPath, ['-e', '0'], { env: childEnv }));

  const createExec = await timeMs(7, async (i) => {
    await env.engine.createBox(ref(`c${i + 1}`), { base: 'bb' });
    await env.engine.exec(ref(`c${i + 1}`), { command: ['true'] }, { stdout: sink(), stderr: sink() });
  });
  const podman = ['--root', join(podmanDir, 'root'), '--runroot', join(podmanDir, 'run'), '--runtime', 'runc'];
  const rootfs = join(env.pool.mnt, 'bases', 'bb');
  const podmanOk = spawnSync('podman', [...podman, 'run', '--rm', '--network', 'host', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024', '--rootfs', root, 'true']).status === 0;
  const podmanRun = podmanOk
    ? await timeMs(7, () => execFileSync('podman', [...podman, 'run', '--rm', '--network', 'host', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024', '--rootfs', root, 'true'], { stdio: 'ignore' }))
    : NaN;
  void rootfs;
  report('exec (medians)', [
    ['engine exec(box, true)', engineExec],
    ['raw bwrap --bind ROOT / … true', bwrap],
    ['ratio engine / bwrap (target <= 2)', ratio(engineExec, bwrap)],
    ['whole process: zomg exec box -- true (local mode)', cli],
    ['node -e 0 (the floor)', nodeFloor],
    ['target', cli <= 200 ? 'met (<= 200 ms)' : 'MISSED (> 200 ms)'],
    ['zomg create + first exec (engine, 7 runs)', createExec],
    ['podman run --rm --rootfs <same tree> true (runc, 7 runs)', podmanOk ? podmanRun : 'podman run failed here'],
    ['ratio podman run / create+exec', podmanOk ? ratio(podmanRun, createExec) : '-'],
  ]);
} finally {
  for (const b of await env.engine.listBoxes()) if (b.status === 'running') await env.engine.stopBox(ref(b.name));
  await env.cleanup();
  rmSync(podmanDir, { recursive: true, force: true });
}
