/**
 * Keystroke echo latency on a terminal in a box: `zomg console` (local: the CLI in-process
 * with the engine; remote: the CLI against `zomg serve` over loopback WebSocket) vs the
 * anchor, raw `nsenter` into the same box on a node-pty of its own (no zomg in the path).
 * Each side runs a shell in the box; one key is written and the time until the shell's echo
 * comes back is taken, 200 times (the line is cleared with Ctrl-U every 40 keys, untimed).
 * Run as root: node dist/bench/console.js
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { type IPty, spawn as spawnPty } from '@lydell/node-pty';
import type { BoxName, ProjectName } from '../src/core/names.js';
import { startServe } from '../tests/helpers/cli.js';
import { busyboxRootfsTar } from '../tests/helpers/fixtures.js';
import { benchEngine, median, ratio, report } from './lib.js';

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const KEYS = 200;
const env = await benchEngine(1024);
const ref = { project: 'bench' as ProjectName, name: 'box' as BoxName };

/** Starts `argv` on a pty, waits for the shell's prompt, then times KEYS echoes. */
async function echoLatency(argv: string[], childEnv: NodeJS.ProcessEnv): Promise<{ median: number; p95: number }> {
  const pty: IPty = spawnPty(argv[0] as string, argv.slice(1), { cols: 100, rows: 30, name: 'xterm-256color', env: childEnv as Record<string, string> });
  let out = '';
  let wake: (() => void) | undefined;
  pty.onData((d) => {
    if (d.includes('\x1b[6n')) pty.write('\x1b[1;1R');
    out += d;
    wake?.();
  });
  const waitFor = async (pred: () => boolean, ms = 20_000): Promise<void> => {
    const deadline = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error(`timed out; output: ${JSON.stringify(out.slice(-200))}`);
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, 50);
      });
    }
  };
  await waitFor(() => out.includes('# '));
  await new Promise((r) => setTimeout(r, 200));
  const times: number[] = [];
  for (let i = 0; i < KEYS; i++) {
    if (i % 40 === 0) {
      pty.write('\x15');
      await new Promise((r) => setTimeout(r, 50));
    }
    out = '';
    const t0 = performance.now();
    pty.write('a');
    await waitFor(() => out.includes('a'));
    times.push(performance.now() - t0);
  }
  pty.write('\x15exit\r');
  await new Promise<void>((resolve) => pty.onExit(() => resolve()));
  const sorted = [...times].sort((a, b) => a - b);
  return { median: median(times), p95: sorted[Math.floor(sorted.length * 0.95)] as number };
}

try {
  await env.engine.importBase('bb', busyboxRootfsTar());
  const box = await env.engine.createBox(ref, { base: 'bb' });
  const runDir = join(env.stateDir, 'run', 'boxes', box.id);
  const init = (JSON.parse(readFileSync(join(runDir, 'init.json'), 'utf8')) as { pid: number }).pid;
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ZOMG_HOME: env.stateDir, ZOMG_POOL_PATH: env.pool.mnt, ZOMG_NO_SIZE_WORKER: '1', ZOMG_PROJECT: 'bench' };
  delete childEnv.NODE_EXTRA_CA_CERTS;
  delete childEnv.ZOMG_URL;

  const raw = await echoLatency(['nsenter', '--target', String(init), '--pid', '--mount', '--uts', '--ipc', '--root', '--wdns=/', '--', '/bin/sh', '-l'], { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', TERM: 'xterm-256color' });
  const local = await echoLatency([process.execPath, MAIN, 'console', 'box'], childEnv);
  const served = await startServe(childEnv);
  let remote;
  try {
    const token = readFileSync(join(env.stateDir, 'token'), 'utf8').trim();
    remote = await echoLatency([process.execPath, MAIN, 'console', 'box'], { ...childEnv, ZOMG_URL: served.url, ZOMG_TOKEN: token });
  } finally {
    await served.stop();
  }
  const ms = (x: { median: number; p95: number }) => `${x.median.toFixed(2)} ms (p95 ${x.p95.toFixed(2)} ms)`;
  report(`Keystroke echo latency, ${KEYS} keys each, median`, [
    ['anchor: raw nsenter on a node-pty', ms(raw)],
    ['zomg console, local', ms(local)],
    ['zomg console, remote (WebSocket over loopback)', ms(remote)],
    ['ratio local / raw', ratio(local.median, raw.median)],
    ['ratio remote / raw', ratio(remote.median, raw.median)],
  ]);
} finally {
  await env.cleanup();
}
