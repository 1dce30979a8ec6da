/**
 * A hostile user inside a box, and an unprivileged user on the host: what each can do to
 * the machine. Real boxes on the busybox base, on zomg's own embedded pool (the loop image
 * it creates and mounts itself, as a user's first run does). Every probe that must fail in
 * a default box is also run where it should work (a --privileged box, or the host), so a
 * probe that fails for an unrelated reason cannot pass for a boundary.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadOrCreateToken } from '../../src/api/listen.js';
import { buildServer } from '../../src/api/server.js';
import type { ZomgError } from '../../src/core/errors.js';
import type { BoxName, ProjectName } from '../../src/core/names.js';
import type { CreateBoxOptions, ExecRequest } from '../../src/core/service.js';
import { type Engine, closePool, createEngine } from '../../src/engine/engine.js';
import { busyboxRootfsTar } from '../helpers/fixtures.js';
import { isRoot } from '../helpers/pool.js';

const ref = (name: string) => ({ project: 'evil' as ProjectName, name: name as BoxName });
const code = (c: string) => (err: unknown) => (err as ZomgError).code === c;

/** The host's non-loopback IPv4 address (a box reaches the host's services on it, like any outside client). */
function hostAddress(): string | undefined {
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  return undefined;
}

/** What a TCP server on the host's 127.0.0.1:port sends (empty when the connection fails). */
function readFrom(port: number): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    const sock = connect({ host: '127.0.0.1', port });
    sock.setTimeout(2000, () => sock.destroy());
    sock.setEncoding('utf8');
    sock.on('data', (c: string) => (text += c));
    sock.on('error', () => resolve(text));
    sock.on('close', () => resolve(text));
  });
}

/** Runs argv as the host user nobody (uid/gid 65534, no groups). */
function asNobody(argv: string[]): { status: number | null; stderr: string; stdout: string } {
  const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--', ...argv], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('a hostile box', { skip: !isRoot() && 'needs root for btrfs' }, () => {
  let stateDir: string;
  let engine: Engine;
  let listener: Server;
  let port: number;
  const warnings: string[] = [];

  const sh = async (box: string, script: string, opts: Partial<ExecRequest> = {}) => {
    let stdout = '';
    let stderr = '';
    const sink = (fn: (s: string) => void) => new Writable({ write: (c: Buffer, _e, cb) => (fn(c.toString()), cb()) });
    const { exit_code } = await engine.exec(ref(box), { command: ['sh', '-c', script], ...opts }, {
      stdout: sink((s) => (stdout += s)),
      stderr: sink((s) => (stderr += s)),
    });
    return { code: exit_code, stdout, stderr, out: stdout + stderr };
  };
  const create = (name: string, options: CreateBoxOptions = {}) => engine.createBox(ref(name), { base: 'bb', ...options });

  before(async () => {
    stateDir = mkdtempSync(join(tmpdir(), 'zomg-hostile-'));
    chmodSync(stateDir, 0o755); // as wide as mkdtemp's parent would make a fresh state directory: zomg tightens it
    engine = await createEngine({ stateDir, poolImageSizeBytes: 512 * 1024 ** 2, onSizesPending: () => undefined, onWarning: (w) => warnings.push(w) });
    await engine.importBase('bb', busyboxRootfsTar());
    // A service on the host's loopback, the way the zomg API listens by default.
    listener = createServer((s) => s.end('host-secret\n'));
    await new Promise<void>((resolve) => listener.listen(0, '0.0.0.0', resolve));
    port = (listener.address() as { port: number }).port;
    await Promise.all([
      create('web', { memory: '48m', pids: 24 }),
      create('other'),
      create('root', { privileged: true }),
    ]);
  });

  after(async () => {
    try {
      listener?.close();
      for (const box of (await engine?.listBoxes().catch(() => [])) ?? []) {
        if (box.status === 'running') await engine.stopBox(ref(box.name)).catch(() => undefined);
      }
      await engine?.close();
    } finally {
      if (stateDir) {
        await closePool(stateDir).catch(() => undefined);
        rmSync(stateDir, { recursive: true, force: true });
      }
    }
  });

  it('runs with docker\'s capabilities (minus mknod), no_new_privs and seccomp, in every exec', async () => {
    const status = (await sh('web', 'grep -E "^(CapEff|CapBnd|NoNewPrivs|Seccomp):" /proc/self/status')).stdout;
    assert.match(status, /CapEff:\s+00000000a00425fb/);
    assert.match(status, /CapBnd:\s+00000000a00425fb/);
    assert.match(status, /NoNewPrivs:\s+1/);
    assert.match(status, /Seccomp:\s+2/);
    // The box's own processes (its keeper, PID 2) too.
    assert.match((await sh('web', 'grep -E "^Seccomp:" /proc/2/status')).stdout, /Seccomp:\s+2/);
    // The privileged box has the host's full set and no filter.
    const root = (await sh('root', 'grep -E "^(CapEff|Seccomp):" /proc/self/status')).stdout;
    const hostCaps = /CapEff:\s+(\w+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
    assert.match(root, new RegExp(`CapEff:\\s+${hostCaps}`));
    assert.match(root, /Seccomp:\s+0/);
  });

  it('cannot remount, mount, mknod, load modules or read the kernel log', async () => {
    const probes = {
      'remount / rw,suid': 'mount -o remount,rw,suid /',
      'remount /box/bin rw': 'mount -o remount,rw /box/bin && touch /box/bin/owned',
      'mount a tmpfs': 'mkdir -p /mnt/t && mount -t tmpfs none /mnt/t',
      'mknod a block device': 'mknod /tmp/loop0 b 7 0',
      'load a module': 'insmod /bin/busybox',
      'read dmesg': 'dmesg | head -1 | grep .',
      'write /proc/sys': 'echo evil > /proc/sys/kernel/hostname',
      'read /proc/kcore': 'head -c 1 /proc/kcore | grep -q .',
      'unshare a user namespace': 'unshare -U true',
    };
    for (const [what, script] of Object.entries(probes)) {
      const r = await sh('web', script);
      assert.notEqual(r.code, 0, `${what} must fail in a default box: ${r.out}`);
    }
    assert.equal((await sh('web', 'test -e /box/bin/owned')).code, 1);
    // Where they should work: a privileged box.
    for (const script of ['mount -o remount,rw /', 'mkdir -p /mnt/t && mount -t tmpfs none /mnt/t && umount /mnt/t', 'mknod /tmp/loop0 b 7 0', 'dmesg | head -1 | grep .']) {
      const r = await sh('root', script);
      assert.equal(r.code, 0, `${script} works in a privileged box: ${r.out}`);
    }
    // insmod fails there too, but for another reason than a refusal.
    assert.doesNotMatch((await sh('root', 'insmod /bin/busybox')).out, /not permitted/i);
    assert.match((await sh('web', 'insmod /bin/busybox')).out, /not permitted/i);
  });

  it('sees no host interface and cannot reach the host\'s loopback; a privileged box can', async () => {
    const hostIfs = Object.keys(networkInterfaces()).filter((n) => n !== 'lo');
    const ifs = (await sh('web', 'cat /proc/net/dev')).stdout;
    for (const name of hostIfs) assert.doesNotMatch(ifs, new RegExp(`^\\s*${name}:`, 'm'), `host interface ${name} visible in the box`);
    assert.match(ifs, /tap0:/);
    for (const ip of ['127.0.0.1', '10.0.2.2']) {
      const r = await sh('web', `nc -w 3 ${ip} ${port} </dev/null`);
      assert.doesNotMatch(r.stdout, /host-secret/, `the host's loopback reached at ${ip}`);
    }
    assert.match((await sh('root', `nc -w 3 127.0.0.1 ${port} </dev/null`)).stdout, /host-secret/);
    // Outbound access works: the host's own address, like any machine outside.
    const addr = hostAddress();
    if (addr !== undefined) assert.match((await sh('web', `nc -w 3 ${addr} ${port} </dev/null`)).stdout, /host-secret/);
  });

  it('sees neither another box\'s processes nor its files', async () => {
    await engine.exec(ref('other'), { command: ['sh', '-c', 'echo other-secret > /secret && (sleep 4242 >/dev/null 2>&1 &)'] }, {
      stdout: new Writable({ write: (_c, _e, cb) => cb() }),
      stderr: new Writable({ write: (_c, _e, cb) => cb() }),
    });
    const r = await sh('web', 'ps; cat /proc/*/cmdline 2>/dev/null | tr "\\0" " "; find / -xdev -name secret 2>/dev/null');
    assert.doesNotMatch(r.stdout, /4242|\/secret/);
    assert.match((await sh('other', 'ps')).stdout, /4242/);
    // Its mount table names no host path (only the pool's own subvolume names).
    assert.equal((await sh('web', 'cat /proc/self/mountinfo')).stdout.includes(stateDir), false);
  });

  it('is held to its memory and process limits, and keeps running', async () => {
    const mem = await sh('web', 'dd if=/dev/zero of=/dev/null bs=96M count=1');
    assert.notEqual(mem.code, 0, `allocating 96 MiB under a 48 MiB limit must fail: ${mem.out}`);
    // Forking until refused: busybox sh gives up at the first refused fork.
    const bomb = await sh('web', 'i=0; while [ $i -lt 40 ]; do sleep 30 >/dev/null 2>&1 & i=$((i+1)); done');
    assert.notEqual(bomb.code, 0);
    assert.match(bomb.stderr, /fork|resource/i);
    const id = (await engine.getBox(ref('web'))).id;
    const group = existsSync('/sys/fs/cgroup/cgroup.controllers') ? `/sys/fs/cgroup/zomg/${id}` : `/sys/fs/cgroup/pids/zomg/${id}`;
    const procs = readFileSync(join(group, 'cgroup.procs'), 'utf8').trim().split('\n').map(Number);
    assert.ok(procs.length <= 24, `at most 24 processes, saw ${procs.length}`);
    // Clean up the box's sleepers from the host (only processes in this box's cgroup).
    for (const pid of procs) {
      const cmdline = existsSync(`/proc/${pid}/cmdline`) ? readFileSync(`/proc/${pid}/cmdline`, 'utf8') : '';
      if (cmdline.startsWith('sleep\u000030')) process.kill(pid, 'SIGKILL');
    }
    for (let i = 0; i < 100 && readFileSync(join(group, 'cgroup.procs'), 'utf8').trim().split('\n').length > 3; i++) await sleep(20);
    assert.equal((await engine.getBox(ref('web'))).status, 'running');
    assert.equal((await sh('web', 'echo alive')).stdout, 'alive\n');
    const info = await engine.getBox(ref('web'));
    assert.deepEqual({ ...info.config, publish: undefined }, { privileged: false, cpus: null, memory_bytes: 48 * 1024 ** 2, pids: 24, publish: undefined });
  });

  it('a setuid binary made in a box is no setuid binary on the host, and host users cannot read the pool', async () => {
    const made = await sh('web', 'cp /bin/busybox /suid-sh && chmod 4755 /suid-sh && stat -c %a /suid-sh');
    assert.equal(made.stdout, '4755\n', made.out);
    const box = await engine.getBox(ref('web'));
    const hostPath = join(stateDir, 'pool', 'roots', box.id, 'suid-sh');
    assert.equal(statSync(hostPath).mode & 0o7777, 0o4755);
    const mount = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === join(stateDir, 'pool'));
    assert.match(mount?.split(' ')[5] ?? '', /nosuid/);
    assert.match(mount?.split(' ')[5] ?? '', /nodev/);
    // Even with the path open to it, nobody gets no root from it.
    const viaPath = asNobody([hostPath, 'id', '-u']);
    assert.notEqual(viaPath.stdout.trim(), '0', 'the box-made setuid binary ran as root on the host');
    // And the path is not open to it: the state directory and the layers are 0700.
    assert.notEqual(asNobody(['ls', join(stateDir, 'pool', 'roots')]).status, 0);
    assert.equal(statSync(stateDir).mode & 0o777, 0o700);
    for (const layer of ['bases', 'roots', 'checkpoints', 'volumes', 'staging']) assert.equal(statSync(join(stateDir, 'pool', layer)).mode & 0o777, 0o700, layer);
    for (const file of ['zomg.db', 'zomg.db-wal', 'zomg.db-shm']) {
      if (existsSync(join(stateDir, file))) assert.equal(statSync(join(stateDir, file)).mode & 0o777, 0o600, file);
    }
    assert.notEqual(asNobody(['cat', join(stateDir, 'zomg.db')]).status, 0);
    // A token file left readable by others is tightened, with a warning.
    writeFileSync(join(stateDir, 'token'), 'a-token-of-sufficient-length-123\n', { mode: 0o644 });
    chmodSync(join(stateDir, 'token'), 0o644);
    const said: string[] = [];
    assert.equal(loadOrCreateToken(stateDir, (l) => said.push(l)).token, 'a-token-of-sufficient-length-123');
    assert.equal(statSync(join(stateDir, 'token')).mode & 0o777, 0o600);
    assert.match(said.join('\n'), /readable by other users/);
    assert.notEqual(asNobody(['cat', join(stateDir, 'token')]).status, 0);
  });

  it('--user refuses a passwd entry with an empty uid', async () => {
    await sh('web', 'echo "ghost::::x:/:/bin/sh" >> /etc/passwd');
    await assert.rejects(sh('web', 'id -u', { user: 'ghost' }), code('ZOMG_BAD_PASSWD_ENTRY'));
  });

  it('publishes a port to the host\'s 127.0.0.1 with --publish', async () => {
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const hostPort = (probe.address() as { port: number }).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const box = await create('pub', { publish: [`${hostPort}:8080`] });
    assert.deepEqual(box.config.publish, [{ host_ip: '127.0.0.1', host_port: hostPort, box_port: 8080, protocol: 'tcp' }]);
    await engine.execBackground(ref('pub'), { command: ['sh', '-c', 'while true; do echo from-the-box | nc -l -p 8080; done'] });
    let got = '';
    for (let i = 0; i < 50 && !got.includes('from-the-box'); i++) {
      await sleep(100);
      got = await readFrom(hostPort);
    }
    assert.match(got, /from-the-box/);
    // The forwarder is the box's: gone with it, also when the box dies without zomg.
    const alive = (pid: number): boolean => existsSync(`/proc/${pid}`) && !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    const runDir = join(stateDir, 'run', 'boxes', box.id);
    const netPid = (): number => (JSON.parse(readFileSync(join(runDir, 'net.json'), 'utf8')) as { pid: number }).pid;
    const first = netPid();
    process.kill((JSON.parse(readFileSync(join(runDir, 'init.json'), 'utf8')) as { pid: number }).pid, 'SIGKILL');
    for (let i = 0; i < 100 && alive(first); i++) await sleep(20);
    assert.equal(alive(first), false, 'slirp4netns outlived its box\'s init');
    assert.equal((await engine.resumeBox(ref('pub'))).box.status, 'running');
    const second = netPid();
    assert.ok(alive(second));
    await engine.deleteBox(ref('pub'));
    assert.equal(alive(second), false, 'slirp4netns outlived its box');
  });

  it('refuses bad limits and ports with a stable code, leaving nothing behind', async () => {
    const before = (await engine.listBoxes()).length;
    const taken = listener.address() as { port: number };
    await assert.rejects(create('bad1', { publish: [`${taken.port}:80`] }), code('ZOMG_PORT_IN_USE'));
    await assert.rejects(create('bad2', { publish: ['70000:80'] }), code('ZOMG_INVALID_PUBLISH'));
    await assert.rejects(create('bad3', { publish: ['8080:80/sctp'] }), code('ZOMG_INVALID_PUBLISH'));
    await assert.rejects(create('bad4', { memory: '1m' }), code('ZOMG_INVALID_MEMORY'));
    await assert.rejects(create('bad5', { memory: '12x' }), code('ZOMG_INVALID_MEMORY'));
    await assert.rejects(create('bad6', { cpus: '0' }), code('ZOMG_INVALID_CPUS'));
    await assert.rejects(create('bad7', { privileged: true, publish: ['8080:80'] }), code('ZOMG_INVALID_PUBLISH'));
    assert.equal((await engine.listBoxes()).length, before);
    const roots = readFileSync('/proc/self/mountinfo', 'utf8'); // nothing mounted for them either
    assert.doesNotMatch(roots, /bad\d/);

    const app = await buildServer({ service: engine, token: null });
    try {
      const res = await app.inject({ method: 'POST', url: '/v1/projects/evil/boxes', payload: { name: 'sneaky', base: 'bb', privileged: true } });
      assert.equal(res.statusCode, 400);
      assert.equal(res.json().code, 'ZOMG_PRIVILEGED_NOT_ALLOWED');
      const bad = await app.inject({ method: 'POST', url: '/v1/projects/evil/boxes', payload: { name: 'sneaky', base: 'bb', cpus: 0 } });
      assert.equal(bad.json().code, 'ZOMG_INVALID_CPUS');
      assert.equal((await engine.listBoxes()).some((b) => b.name === 'sneaky'), false);
    } finally {
      await app.close();
    }
  });
});
