/**
 * A private docker daemon for the tests that need real docker: its own data root, exec root,
 * socket and pid file under a fresh temporary directory, no iptables rules, no bridge. It
 * starts its own containerd. `stop()` ends exactly the daemon it started (by pid), unmounts
 * what it left (the network namespace mount under the exec root) and removes the directory.
 * A dockerd someone else runs is never touched: tests reach this one only through
 * DOCKER_HOST.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestDocker {
  /** `unix://<dir>/docker.sock`, for DOCKER_HOST. */
  host: string;
  dir: string;
  /** The docker CLI against this daemon. */
  docker(...args: string[]): string;
  /** Image ids (intermediate ones included) and container ids, newline-separated. */
  leftovers(): { images: string; containers: string };
  /** Stops the daemon (SIGTERM, then SIGKILL after 20 s) and removes everything it had. Idempotent. */
  stop(): Promise<void>;
}

export function hasDockerd(): boolean {
  try {
    execFileSync('dockerd', ['--version'], { stdio: 'ignore' });
    execFileSync('docker', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const exited = (child: ChildProcess): boolean => child.exitCode !== null || child.signalCode !== null;

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (exited(child)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** Mount points at or below `dir`, deepest first. */
function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4]?.replace(/\\040/g, ' '))
    .filter((p): p is string => p !== undefined && (p === dir || p.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
}

export async function startDockerd(): Promise<TestDocker> {
  const dir = mkdtempSync(join(tmpdir(), 'zomg-dockerd-'));
  const host = `unix://${join(dir, 'docker.sock')}`;
  const log = openSync(join(dir, 'dockerd.log'), 'a');
  const child = spawn(
    'dockerd',
    [
      '--data-root', join(dir, 'data'),
      '--exec-root', join(dir, 'exec'),
      '-H', host,
      '--pidfile', join(dir, 'dockerd.pid'),
      '--iptables=false',
      '--ip6tables=false',
      '--bridge=none',
    ],
    { stdio: ['ignore', log, log] },
  );
  closeSync(log);
  // A safety net for a test process that exits without calling stop(): the daemon goes with it.
  const onExit = (): void => {
    if (!exited(child)) child.kill('SIGTERM');
  };
  process.once('exit', onExit);
  const docker = (...args: string[]): string =>
    execFileSync('docker', args, { encoding: 'utf8', env: { ...process.env, DOCKER_HOST: host }, stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    process.removeListener('exit', onExit);
    if (!exited(child)) {
      child.kill('SIGTERM');
      if (!(await waitExit(child, 20_000))) {
        child.kill('SIGKILL');
        await waitExit(child, 5_000);
      }
    }
    // dockerd leaves its default network namespace mounted (research/machine.md §3).
    for (const m of mountsUnder(dir)) {
      try {
        execFileSync('umount', ['-l', m], { stdio: 'ignore' });
      } catch {
        /* gone already */
      }
    }
    if (mountsUnder(dir).length === 0) rmSync(dir, { recursive: true, force: true });
  };

  try {
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (exited(child)) throw new Error(`dockerd exited at start:\n${readFileSync(join(dir, 'dockerd.log'), 'utf8').slice(-2000)}`);
      try {
        docker('version', '--format', '{{.Server.Version}}');
        break;
      } catch {
        if (Date.now() > deadline) throw new Error(`dockerd did not answer within 30 s:\n${readFileSync(join(dir, 'dockerd.log'), 'utf8').slice(-2000)}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  } catch (err) {
    await stop();
    throw err;
  }

  return {
    host,
    dir,
    docker,
    leftovers: () => ({ images: docker('images', '-a', '-q').trim(), containers: docker('ps', '-a', '-q').trim() }),
    stop,
  };
}
