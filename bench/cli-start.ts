/**
 * Whole-process start of the CLI in local mode: `zomg list` and `zomg exec box -- true`
 * (target: median ≤ 120 ms), the bundle (what `bin` runs) beside the unbundled tsc output
 * and the floor of starting Node itself, all in the same run. Measured without
 * NODE_EXTRA_CA_CERTS, and with it when this environment sets it (it makes every Node
 * start parse a CA bundle). Run as root: node dist/bench/cli-start.js
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { BoxName, ProjectName } from '../src/core/names.js';
import { busyboxRootfsTar } from '../tests/helpers/fixtures.js';
import { benchEngine, ratio, report, timeMs } from './lib.js';

const BUNDLE = fileURLToPath(new URL('../bundle/cli/zomg.js', import.meta.url));
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
  const time = (e: NodeJS.ProcessEnv, args: string[]): Promise<number> => timeMs(RUNS, () => execFileSync(process.execPath, args, { env: e, stdio: 'ignore' }));

  const envs: Array<[string, NodeJS.ProcessEnv]> = [['', bare]];
  if (process.env.NODE_EXTRA_CA_CERTS) envs.push([' [NODE_EXTRA_CA_CERTS as set here]', withCa]);
  for (const [label, e] of envs) {
    const node = await time(e, ['-e', '0']);
    const list = await time(e, [BUNDLE, 'list']);
    const exec = await time(e, [BUNDLE, 'exec', 'box', '--', 'true']);
    const listTsc = await time(e, [UNBUNDLED, 'list']);
    const execTsc = await time(e, [UNBUNDLED, 'exec', 'box', '--', 'true']);
    const version = await time(e, [BUNDLE, '--version']);
    report(`whole-process CLI start, local mode, median of ${RUNS}${label}`, [
      ['node -e 0 (the floor, the anchor)', node],
      ['zomg --version (bundle)', version],
      ['zomg list (bundle)', list],
      ['zomg exec box -- true (bundle)', exec],
      ['zomg list (unbundled tsc output)', listTsc],
      ['zomg exec box -- true (unbundled tsc output)', execTsc],
      ['ratio list / node', ratio(list, node)],
      ['ratio exec / node', ratio(exec, node)],
      ['ratio unbundled / bundle (list, exec)', `${ratio(listTsc, list)}, ${ratio(execTsc, exec)}`],
      ['target (list and exec <= 120 ms)', list <= 120 && exec <= 120 ? 'met' : 'MISSED'],
    ]);
  }
} finally {
  await env.cleanup();
}
