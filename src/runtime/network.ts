/**
 * A default box's network: its own network namespace (bwrap `--unshare-net`: only `lo`)
 * plus slirp4netns, a user-mode TCP/IP stack on the host that gives the namespace a
 * `tap0` with 10.0.2.100/24, a gateway at 10.0.2.2 and DNS at 10.0.2.3 — outbound access
 * without bridges, iptables or host interfaces in the box. `--disable-host-loopback` stops
 * 10.0.2.2 from reaching the host's 127.0.0.1, so services bound to the host's loopback
 * (the zomg API included) are out of a box's reach. `--publish` adds host→box forwards
 * through slirp4netns's API socket, bound to 127.0.0.1 unless an address is given.
 *
 * slirp4netns runs detached in its own session (it must outlive the CLI process that
 * started the box) and is recorded in `<runDir>/net.json` (pid + start time, checked before
 * any kill); stopBox kills it, and a start first kills one left behind. It also ends by
 * itself when the box dies however it dies (`--exit-fd`): its exit fd is the read end of a
 * pipe whose only write end is held by the box's init (see `makeLifeline`).
 */
import { closeSync, constants, openSync, readFileSync, rmSync, unlinkSync } from 'node:fs';
import type { Server } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConflictError, ToolError } from '../core/errors.js';
import type { PortForward } from '../core/types.js';
import { childProcess, nodeDgram, nodeNet } from '../system/builtins.js';
import { atomicWriteFile, isErrno } from '../system/fs.js';
import { run } from '../system/run.js';
import { readProcStat } from '../system/procfs.js';

const NET_RECORD = 'net.json';
const NET_LOG = 'net.log';
const API_SOCKET = 'slirp.sock';
const BOX_DNS = '10.0.2.3';
const READY_TIMEOUT_MS = 10_000;

interface NetRecord {
  pid: number;
  startTime: number;
}

const portInUse = (p: PortForward, cause?: unknown): ConflictError =>
  new ConflictError('ZOMG_PORT_IN_USE', `host port ${p.host_ip}:${p.host_port}/${p.protocol} is already in use`, {
    cause,
    hint: 'pick another host port for --publish, or stop what listens there',
  });

/** Fails with ZOMG_PORT_IN_USE when a host port of `publish` cannot be bound now. */
export async function checkPortsFree(publish: PortForward[]): Promise<void> {
  for (const p of publish) {
    await new Promise<void>((resolve, reject) => {
      const fail = (err: unknown): void => reject(isErrno(err, 'EADDRINUSE', 'EACCES') ? portInUse(p, err) : err);
      if (p.protocol === 'udp') {
        const socket = nodeDgram().createSocket('udp4');
        socket.once('error', fail);
        socket.bind(p.host_port, p.host_ip, () => socket.close(() => resolve()));
      } else {
        const server: Server = nodeNet().createServer();
        server.once('error', fail);
        server.listen({ port: p.host_port, host: p.host_ip, exclusive: true }, () => server.close(() => resolve()));
      }
    });
  }
}

/** The resolv.conf of a box with its own network: slirp4netns's DNS, the host's search domains. */
export function boxResolvConf(): string {
  let host = '';
  try {
    host = readFileSync('/etc/resolv.conf', 'utf8');
  } catch (err) {
    if (!isErrno(err, 'ENOENT')) throw err;
  }
  const kept = host.split('\n').filter((l) => /^(search|domain|options)\s/.test(l));
  return [`nameserver ${BOX_DNS}`, ...kept, ''].join('\n');
}

function readNetRecord(runDir: string): NetRecord | undefined {
  try {
    const r = JSON.parse(readFileSync(join(runDir, NET_RECORD), 'utf8')) as NetRecord;
    return Number.isInteger(r.pid) ? r : undefined;
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR') || err instanceof SyntaxError) return undefined;
    throw err;
  }
}

/** Kills the box's slirp4netns, if the recorded one still runs. Idempotent. */
export async function stopNetwork(runDir: string): Promise<void> {
  const record = readNetRecord(runDir);
  if (record !== undefined) {
    const stat = readProcStat(record.pid);
    if (stat !== undefined && stat.startTime === record.startTime && stat.state !== 'Z') {
      try {
        process.kill(record.pid, 'SIGKILL');
      } catch (err) {
        if (!isErrno(err, 'ESRCH')) throw err;
      }
      for (let i = 0; i < 200; i++) {
        const now = readProcStat(record.pid);
        if (now === undefined || now.startTime !== record.startTime || now.state === 'Z') break;
        await sleep(5);
      }
    }
  }
  for (const file of [NET_RECORD, API_SOCKET]) {
    try {
      unlinkSync(join(runDir, file));
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err;
    }
  }
}

/**
 * A pipe for slirp4netns's `--exit-fd`: the write end goes to bwrap (inherited by the box's
 * init and keeper), the read end to slirp4netns, which exits at EOF — when the last box
 * process holding the write end is gone. A FIFO because Node makes no bare pipes; it is
 * unlinked at once. The caller closes both fds once they are handed over.
 */
export async function makeLifeline(runDir: string): Promise<{ readFd: number; writeFd: number }> {
  const path = join(runDir, 'lifeline');
  rmSync(path, { force: true });
  await run('mkfifo', ['-m', '0600', path]);
  try {
    // Non-blocking, so opening the read end does not wait for a writer.
    const readFd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    return { readFd, writeFd: openSync(path, constants.O_WRONLY) };
  } finally {
    unlinkSync(path);
  }
}

/** One request on slirp4netns's API socket. */
function slirpApi(socketPath: string, request: object): Promise<{ return?: unknown; error?: { desc?: string } }> {
  return new Promise((resolve, reject) => {
    const sock = nodeNet().connect(socketPath);
    let text = '';
    const timer = setTimeout(() => sock.destroy(new Error('slirp4netns did not answer')), 5000);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.end(JSON.stringify(request)));
    sock.on('data', (c: string) => (text += c));
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    sock.on('close', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(text) as { return?: unknown; error?: { desc?: string } });
      } catch (err) {
        reject(err);
      }
    });
  });
}

/**
 * Starts slirp4netns for the network namespace of `initPid`, waits until `tap0` is
 * configured, then adds the `publish` forwards. On failure, kills what it started.
 */
export async function startNetwork(slirp: string, runDir: string, initPid: number, publish: PortForward[], exitFd: number): Promise<void> {
  await stopNetwork(runDir);
  const socketPath = join(runDir, API_SOCKET);
  const logFd = openSync(join(runDir, NET_LOG), 'a', 0o600);
  const child = (() => {
    try {
      // fd 3: the ready pipe (slirp4netns writes "1" once tap0 is up); fd 4: the lifeline.
      return childProcess().spawn(
        slirp,
        ['--configure', '--mtu=65520', '--disable-host-loopback', '--enable-sandbox', '--enable-seccomp', '--api-socket', socketPath, '--ready-fd', '3', '--exit-fd', '4', String(initPid), 'tap0'],
        { detached: true, stdio: ['ignore', logFd, logFd, 'pipe', exitFd] },
      );
    } finally {
      closeSync(logFd);
    }
  })();
  let exited: string | undefined;
  child.on('error', (err) => (exited = err.message));
  child.on('exit', (code, signal) => (exited = signal ?? `exit ${code}`));
  const ready = child.stdio[3] as NodeJS.ReadableStream;
  try {
    if (child.pid === undefined) throw new Error('slirp4netns could not be started');
    const stat = readProcStat(child.pid);
    if (stat !== undefined) atomicWriteFile(join(runDir, NET_RECORD), JSON.stringify({ pid: child.pid, startTime: stat.startTime }), 0o600);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('slirp4netns was not ready in time')), READY_TIMEOUT_MS);
      ready.once('data', () => {
        clearTimeout(timer);
        resolve();
      });
      ready.once('end', () => {
        clearTimeout(timer);
        reject(new Error(`slirp4netns ended (${exited ?? 'before it was ready'})`));
      });
    });
    for (const p of publish) {
      const answer = await slirpApi(socketPath, {
        execute: 'add_hostfwd',
        arguments: { proto: p.protocol, host_addr: p.host_ip, host_port: p.host_port, guest_port: p.box_port },
      });
      if (answer.error !== undefined) {
        if (/bind|in use/i.test(answer.error.desc ?? '')) throw portInUse(p);
        throw new Error(`slirp4netns refused --publish ${p.host_port}:${p.box_port}: ${answer.error.desc ?? 'unknown error'}`);
      }
    }
  } catch (err) {
    await stopNetwork(runDir);
    if (err instanceof ConflictError) throw err;
    throw new ToolError('ZOMG_NETWORK_FAILED', 'could not set up the box\'s network', {
      cause: err,
      hint: 'slirp4netns (installed with podman) must be able to run; net.log in the box\'s run directory has its output',
    });
  } finally {
    (ready as unknown as { destroy(): void }).destroy();
    child.unref();
  }
}
