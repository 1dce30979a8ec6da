/**
 * Whole-process start of the CLI in local mode: `zomg list` and `zomg exec box -- true`
 * (target: median ≤ 120 ms), the bundle (what `bin` runs) beside the unbundled tsc output
 * and the floor of starting Node itself, all in the same run. Measured without
 * NODE_EXTRA_CA_CERTS, and with it when this environment sets it (it makes every Node
 * start parse a CA bundle). Run as root: node dist/bench/cli-start.js
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BoxName, ProjectName } from '../src/core/names.js';
import { busyboxRootfsTar } from '../tests/helpers/fixtures.js';
import { benchEngine, ratio, report, timeMs } from './lib.js';

/** CPU time of the reaped children of this process, in ms (/proc/self/stat cutime + cstime). */
function childCpuMs(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields after the command name start at field 3 (state): cutime is field 16, cstime 17.
  const ticks = Number(fields[16 - 3]) + Number(fields[17 - 3]);
  return (ticks * 1000) / CLOCK_TICKS;
}
const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

const BUNDLE = fileURLToPath(new URL('../bundle/cli/zomg.cjs', import.meta.url));
const UNBUNDLED = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const RUNS = Number(process.env.RUNS ?? 21);
const env = await benchEngine(1024);
try {
  await env.engine.importBase('bb', busyboxRootfsTar());
  for (const name of ['box', 'two', 'three']) await env.engine.createBox({ project: 'bench' as ProjectName, name: name as BoxName }, { base: 'bb' });
  const withCa: NodeJS.ProcessEnv = { ...process.env, ZOMG_HOME: env.stateDir, ZOMG_POOL_PATH: env.pool.mnt, ZOMG_NO_SIZE_WORKER: '1', ZOMG_PROJECT: 'bench' };
  delete withCa.ZOMG_URL;
  delete withCa.ZOMG_API_URL;
  delete withCa.ZOMG_PROFILE;
  const bare: NodeJS.ProcessEnv = { ...withCa };
  delete bare.NODE_EXTRA_CA_CERTS;
  // On a loaded machine wall time mostly measures the wait for a core: the CPU time the
  // child used (user + system, from this process's reaped-children counters) is printed too.
  const cpu = new Map<string, number>();
  // The launcher's code cache (src/cli/launcher.ts), removed before each run of the rows that measure a start without it.
  const dropCache = (): void => {
    for (const f of readdirSync(dirname(BUNDLE))) if (f.endsWith('.v8cache')) rmSync(join(dirname(BUNDLE), f), { force: true });
  };
  const time = async (e: NodeJS.ProcessEnv, args: string[], label = args.join(' '), before?: () => void): Promise<number> => {
    const cpuBefore = childCpuMs();
    const wall = await timeMs(RUNS, () => {
      before?.();
      execFileSync(process.execPath, args, { env: e, stdio: 'ignore' });
    });
    cpu.set(label, (childCpuMs() - cpuBefore) / (RUNS + 1));
    return wall;
  };
  const withCpu = (wall: number, args: string[], label = args.join(' ')): string => `${wall.toFixed(1)} ms   (cpu ${(cpu.get(label) ?? NaN).toFixed(1)} ms)`;
  const load = (): string => loadavg().map((l) => l.toFixed(1)).join(' ');

  const envs: Array<[string, NodeJS.ProcessEnv]> = [['', bare]];
  if (process.env.NODE_EXTRA_CA_CERTS) envs.push([' [NODE_EXTRA_CA_CERTS as set here]', withCa]);
  for (const [label, e] of envs) {
    const loadBefore = load();
    const listCold = await time(e, [BUNDLE, 'list'], 'list without cache', dropCache);
    const node = await time(e, ['-e', '0']);
    const list = await time(e, [BUNDLE, 'list']);
    const exec = await time(e, [BUNDLE, 'exec', 'box', '--', 'true']);
    const listTsc = await time(e, [UNBUNDLED, 'list']);
    const execTsc = await time(e, [UNBUNDLED, 'exec', 'box', '--', 'true']);
    const version = await time(e, [BUNDLE, '--version']);
    // Another build to compare with in the same run (e.g. a checkout of an older commit).
    const baseline = process.env.ZOMG_BENCH_BASELINE;
    const before = baseline ? [await time(e, [baseline, 'list']), await time(e, [baseline, 'exec', 'box', '--', 'true'])] : undefined;
    report(`whole-process CLI start, local mode, wall median of ${RUNS} (cpu: mean user+sys)${label}`, [
      ['node -e 0 (the floor, the anchor)', withCpu(node, ['-e', '0'])],
      ['zomg --version (bundle)', withCpu(version, [BUNDLE, '--version'])],
      ['zomg list (bundle)', withCpu(list, [BUNDLE, 'list'])],
      ['zomg list (bundle, no code cache: the first start)', withCpu(listCold, [BUNDLE, 'list'], 'list without cache')],
      ['zomg exec box -- true (bundle)', withCpu(exec, [BUNDLE, 'exec', 'box', '--', 'true'])],
      ['zomg list (unbundled tsc output)', withCpu(listTsc, [UNBUNDLED, 'list'])],
      ['zomg exec box -- true (unbundled tsc output)', withCpu(execTsc, [UNBUNDLED, 'exec', 'box', '--', 'true'])],
      ...(baseline && before
        ? ([
            ['zomg list (ZOMG_BENCH_BASELINE)', withCpu(before[0] as number, [baseline, 'list'])],
            ['zomg exec box -- true (ZOMG_BENCH_BASELINE)', withCpu(before[1] as number, [baseline, 'exec', 'box', '--', 'true'])],
          ] as Array<[string, string]>)
        : []),
      ['cpu ratio list / node, exec / node', `${ratio(cpu.get(`${BUNDLE} list`) ?? NaN, cpu.get('-e 0') ?? NaN)}, ${ratio(cpu.get(`${BUNDLE} exec box -- true`) ?? NaN, cpu.get('-e 0') ?? NaN)}`],
      ['ratio list / node', ratio(list, node)],
      ['ratio exec / node', ratio(exec, node)],
      ['ratio unbundled / bundle (list, exec)', `${ratio(listTsc, list)}, ${ratio(execTsc, exec)}`],
      ['target (list and exec <= 120 ms)', list <= 120 && exec <= 120 ? 'MET' : 'MISSED'],
      ['load average (1, 5, 15 min) before, after', `${loadBefore} / ${load()}`],
    ]);
  }
} finally {
  await env.cleanup();
}
