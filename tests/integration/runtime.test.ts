/**
 * The runtime on a real btrfs pool with a busybox rootfs: a running box as its user sees it
 * (hostname, /proc, /dev, /tmp, environment, volumes, users, exit codes, stdin), and the
 * lifecycle as the host sees it (the init outlives its starter, stop kills everything,
 * nothing is mounted on the host, stale pid files read as stopped).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { boxEnvironment, renderBoxesEnv } from '../../src/runtime/environment.js';
import { boxResolvConf } from '../../src/runtime/network.js';
import { boxStatus, execBackground, execInBox, startBox, stopBox, type BoxSpec, type ExecOptions } from '../../src/runtime/sandbox.js';
import { busyboxRootfsTar } from '../helpers/fixtures.js';
import { isRoot, makeTestPool, type TestPool } from '../helpers/pool.js';

const canRun = isRoot() && hasTool('bwrap') && hasTool('nsenter');

function hasTool(name: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** The shared busybox rootfs fixture, plus a project user alice (uid 1000). */
function buildBusyboxRoot(root: string): void {
  execFileSync('tar', ['--numeric-owner', '-xpf', busyboxRootfsTar(), '-C', root]);
  appendFileSync(join(root, 'etc/passwd'), 'alice:x:1000:1000:Alice:/nonexistent:/bin/sh\n');
  appendFileSync(join(root, 'etc/group'), 'alice:x:1000:\n');
}

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function exec(runDir: string, command: string[], opts: Omit<ExecOptions, 'command'> & { input?: string } = {}): Promise<Result> {
  const handle = execInBox(runDir, { ...opts, command });
  let stdout = '';
  let stderr = '';
  handle.stdout?.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  handle.stderr?.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  handle.stdin?.end(opts.input ?? '');
  const code = await handle.exited;
  return { code, stdout, stderr };
}

async function out(runDir: string, command: string[], opts: Omit<ExecOptions, 'command'> = {}): Promise<string> {
  const r = await exec(runDir, command, opts);
  assert.equal(r.code, 0, `${command.join(' ')} failed: ${r.stderr}`);
  return r.stdout.trim();
}

/** Host pids of every process in the PID namespace whose init is `initPid`. */
function pidsInNamespaceOf(initPid: number): number[] {
  const ns = readlinkSync(`/proc/${initPid}/ns/pid`);
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readlinkSync(`/proc/${entry}/ns/pid`) === ns) pids.push(Number(entry));
    } catch {
      /* exited meanwhile */
    }
  }
  return pids;
}

function alive(pid: number): boolean {
  try {
    const state = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0];
    return state !== 'Z';
  } catch {
    return false;
  }
}

/**
 * The host mounts a box could leak: anything under the test's directories, anything of
 * the pool's filesystem (a bind of a box root or volume), and the kinds of filesystem a
 * box mounts (proc, tmpfs, devpts, …). Other tests on this host may mount and unmount
 * their own pools meanwhile, so the rest of the table is not compared.
 */
function hostMounts(pool: TestPool, scratch: string): string[] {
  const lines = readFileSync('/proc/self/mountinfo', 'utf8').trim().split('\n');
  const fields = lines.map((line) => line.split(' '));
  const poolDev = fields.find((f) => f[4] === pool.mnt)?.[2];
  const kinds = new Set(['proc', 'tmpfs', 'devtmpfs', 'devpts', 'mqueue', 'sysfs']);
  return fields
    .filter((f) => {
      const mountPoint = f[4] ?? '';
      const fsType = f[f.indexOf('-') + 1] ?? '';
      return mountPoint.startsWith(pool.dir) || mountPoint.startsWith(scratch) || f[2] === poolDev || kinds.has(fsType);
    })
    .map((f) => f.slice(2).join(' ')) // mount ids aside
    .sort();
}

async function waitFor<T>(what: string, fn: () => T | undefined | Promise<T | undefined>, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value !== undefined) return value;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe('runtime: a running box', { skip: canRun ? false : 'needs root, bwrap and nsenter' }, () => {
  let pool: TestPool;
  let scratch: string;
  let spec: BoxSpec;
  let vols: { bin: string; all: string; proj: string; home: string };
  let mountsBefore: string[];
  const userEnv = { FOO: `it's "quoted" $HOME \\ \`x\``, EMPTY: '' };
  const started: string[] = [];

  function makeBox(name: string): BoxSpec {
    const root = join(pool.mnt, name);
    execFileSync('btrfs', ['subvolume', 'create', root], { stdio: 'ignore' });
    buildBusyboxRoot(root);
    // As in a Debian base: bash's rc file (no trailing newline) and a profile.d directory.
    writeFileSync(join(root, 'etc/bash.bashrc'), '# system bashrc\nPS1=x');
    mkdirSync(join(root, 'etc/profile.d'), { recursive: true });
    const boxSpec: BoxSpec = {
      id: `id-${name}`,
      root,
      hostname: `${name}.proj`,
      env: boxEnvironment({ project: 'proj', box: name, apiUrl: 'http://127.0.0.1:7070', user: userEnv }),
      volumes: [
        { hostPath: vols.bin, boxPath: '/box/bin', readOnly: true },
        { hostPath: vols.all, boxPath: '/box/all', readOnly: false },
        { hostPath: vols.proj, boxPath: '/box/proj', readOnly: false },
        { hostPath: vols.home, boxPath: '/home', readOnly: false },
      ],
      runDir: join(pool.dir, 'run/boxes', `id-${name}`),
    };
    started.push(boxSpec.runDir);
    return boxSpec;
  }

  before(() => {
    pool = makeTestPool(512);
    scratch = mkdtempSync(join(tmpdir(), 'zomg-rt-'));
    vols = { bin: join(pool.dir, 'vol-bin'), all: join(pool.dir, 'vol-all'), proj: join(pool.dir, 'vol-proj'), home: join(pool.dir, 'vol-home') };
    for (const dir of Object.values(vols)) mkdirSync(dir);
    writeFileSync(join(vols.bin, 'hello-tool'), '#!/bin/sh\necho hello from box bin\n', { mode: 0o755 });
    mountsBefore = hostMounts(pool, scratch);
    spec = makeBox('b1');
  });

  after(async () => {
    try {
      for (const runDir of started) await stopBox(runDir);
    } finally {
      pool.cleanup();
      rmSync(scratch, { recursive: true, force: true });
    }
  });

  test('starts, and starting again returns the same init', async () => {
    assert.equal(await boxStatus(spec.runDir, spec.root), 'stopped');
    const { pid } = await startBox(spec);
    assert.ok(pid > 1);
    assert.equal(await boxStatus(spec.runDir, spec.root), 'running');
    assert.deepEqual(await startBox(spec), { pid });
  });

  test('has its hostname, a PID namespace and /proc', async () => {
    assert.equal(await out(spec.runDir, ['hostname']), 'b1.proj');
    const shellPid = Number(await out(spec.runDir, ['echo $$'], { shell: true }));
    assert.ok(shellPid > 1 && shellPid < 100, `pid in the box: ${shellPid}`);
    assert.equal((await exec(spec.runDir, ['cat', '/proc/1/cmdline'])).stdout, 'bwrap\0--args\x003\0--info-fd\x004\0--\0sleep\0infinity\0');
    assert.equal(await out(spec.runDir, ['cat', '/proc/2/comm']), 'sleep');
    // The init's command line shows no host path (the arguments went through a pipe).
    assert.doesNotMatch(await out(spec.runDir, ['cat', '/proc/1/cmdline']), new RegExp(pool.mnt));
  });

  test('has a 1777 /tmp, a minimal /dev and a suid-capable root', async () => {
    assert.equal(await out(spec.runDir, ['stat', '-c', '%a', '/tmp']), '1777');
    assert.equal(await out(spec.runDir, ['stat', '-c', '%a', '/dev/shm']), '1777');
    assert.equal(await out(spec.runDir, ['sh', '-c', 'echo x > /dev/null && head -c 4 /dev/zero | wc -c && head -c 4 /dev/urandom | wc -c']), '4\n4');
    const dev = await out(spec.runDir, ['ls', '/dev']);
    for (const name of ['null', 'zero', 'full', 'random', 'urandom', 'tty', 'pts', 'shm', 'fd', 'stdin', 'stdout', 'stderr', 'ptmx']) {
      assert.ok(dev.split(/\s+/).includes(name), `/dev/${name} missing: ${dev}`);
    }
    const mounts = await out(spec.runDir, ['cat', '/proc/self/mountinfo']);
    const rootLine = mounts.split('\n').find((line) => line.split(' ')[4] === '/');
    assert.ok(rootLine);
    assert.doesNotMatch(rootLine.split(' ')[5] ?? '', /nosuid/);
    assert.match(mounts, / \/tmp .* - tmpfs /);
    assert.match(mounts, / \/dev\/shm .* - tmpfs /);
  });

  test('gets the injected environment and /etc/boxes-env', async () => {
    const env = await out(spec.runDir, ['env']);
    for (const line of ['ZOMG_PROJECT=proj', 'BOX_NAME=b1', 'ZOMG_API_URL=http://127.0.0.1:7070', 'TERM=xterm-256color', 'HOME=/root', `FOO=${userEnv.FOO}`]) {
      assert.ok(env.split('\n').includes(line), `missing ${line} in:\n${env}`);
    }
    assert.match(env, /^PATH=.*\/usr\/bin.*:\/box\/bin$/m);
    assert.equal(await out(spec.runDir, ['echo "$BAR"'], { shell: true, env: { BAR: 'per-exec' } }), 'per-exec');
    assert.equal(await out(spec.runDir, ['cat', '/etc/boxes-env']), renderBoxesEnv(spec.env).trim());
    assert.equal(readFileSync(join(spec.root, 'etc/boxes-env'), 'utf8'), renderBoxesEnv(spec.env));
    // Shells started without zomg's help find it through the rc hooks.
    assert.equal(
      readFileSync(join(spec.root, 'etc/bash.bashrc'), 'utf8'),
      '# system bashrc\nPS1=x\nif [ -r /etc/boxes-env ]; then . /etc/boxes-env; fi # zomg: box environment\n',
    );
    assert.equal(await out(spec.runDir, ['env', '-i', '/bin/sh', '-c', '. /etc/profile.d/boxes-env.sh && echo "$BOX_NAME"']), 'b1');
    // Sourcing the file in a clean shell gives back exactly the values.
    const sourced = await out(spec.runDir, ['env', '-i', '/bin/sh', '-c', '. /etc/boxes-env && printf %s "$FOO"']);
    assert.equal(sourced, userEnv.FOO);
  });

  test('pipes stdin through and streams stdout as produced', async () => {
    assert.equal((await exec(spec.runDir, ['cat'], { input: 'hello\nworld\n' })).stdout, 'hello\nworld\n');
    const handle = execInBox(spec.runDir, { command: ['cat'] });
    assert.ok(handle.stdin && handle.stdout);
    handle.stdout.setEncoding('utf8');
    handle.stdin.write('first\n');
    const first = await new Promise<string>((resolve) => handle.stdout?.once('data', resolve));
    assert.equal(first, 'first\n'); // echoed back while stdin is still open
    handle.stdin.end();
    assert.equal(await handle.exited, 0);
  });

  test('preserves exit codes: own code, 127 missing, 126 not executable, 128+N on signal', async () => {
    assert.equal((await exec(spec.runDir, ['sh', '-c', 'exit 7'])).code, 7);
    assert.equal((await exec(spec.runDir, ['exit 9'], { shell: true })).code, 9);
    assert.equal((await exec(spec.runDir, ['no-such-command'])).code, 127);
    assert.equal((await exec(spec.runDir, ['/etc/passwd'])).code, 126);
    const handle = execInBox(spec.runDir, { command: ['sleep', '30'] });
    await sleep(100);
    handle.kill('SIGKILL');
    assert.equal(await handle.exited, 137);
  });

  test('honours --wd and rejects a missing one before running', async () => {
    assert.equal(await out(spec.runDir, ['pwd'], { cwd: '/etc' }), '/etc');
    assert.equal(await out(spec.runDir, ['pwd']), '/root');
    assert.throws(() => execInBox(spec.runDir, { command: ['pwd'], cwd: '/nope' }), { code: 'ZOMG_NO_SUCH_DIRECTORY' });
    assert.throws(() => execInBox(spec.runDir, { command: ['pwd'], cwd: '/etc/passwd' }), { code: 'ZOMG_NO_SUCH_DIRECTORY' });
  });

  test('runs as a box user with a shared /home/<user>', async () => {
    const r = await out(spec.runDir, ['sh', '-c', 'id -u; id -g; echo $HOME; echo $USER; pwd; touch ~/mine'], { user: 'alice' });
    assert.deepEqual(r.split('\n'), ['1000', '1000', '/home/alice', 'alice', '/home/alice']);
    const st = statSync(join(vols.home, 'alice/mine'));
    assert.equal(st.uid, 1000);
    assert.throws(() => execInBox(spec.runDir, { command: ['id'], user: 'mallory' }), { code: 'ZOMG_UNKNOWN_USER' });
    assert.equal(await out(spec.runDir, ['id', '-u'], { user: 'root' }), '0');
  });

  test('mounts the volumes inside the box only', async () => {
    assert.equal(await out(spec.runDir, ['hello-tool']), 'hello from box bin');
    assert.notEqual((await exec(spec.runDir, ['touch', '/box/bin/x'])).code, 0, '/box/bin must be read-only');
    await out(spec.runDir, ['sh', '-c', 'echo all > /box/all/f && echo proj > /box/proj/f']);
    assert.equal(readFileSync(join(vols.all, 'f'), 'utf8'), 'all\n');
    assert.equal(readFileSync(join(vols.proj, 'f'), 'utf8'), 'proj\n');
    // The root subvolume only has empty mountpoints.
    for (const dir of ['box/bin', 'box/all', 'box/proj', 'home']) {
      assert.deepEqual(readdirSync(join(spec.root, dir)), [], `${dir} in the root must be an empty mountpoint`);
      assert.equal(statSync(join(spec.root, dir)).mode & 0o7777, 0o755);
    }
    // The box's DNS configuration (its own network: slirp4netns's resolver), over an empty placeholder in the root.
    assert.equal(await out(spec.runDir, ['cat', '/etc/resolv.conf']), boxResolvConf().trim());
    assert.equal(readFileSync(join(spec.root, 'etc/resolv.conf'), 'utf8'), '');
    assert.notEqual((await exec(spec.runDir, ['sh', '-c', 'echo x >> /etc/resolv.conf'])).code, 0);
  });

  test('runs --bg jobs detached, logging to /tmp/boxes/exec/<pid>.log', async () => {
    const job = await execBackground(spec.runDir, { command: ['sh', '-c', 'echo bg-out; echo bg-err >&2; exec sleep 60'] });
    assert.ok(job.pid > 1 && job.pid < 1000);
    assert.equal(job.logPath, `/tmp/boxes/exec/${job.pid}.log`);
    const log = await waitFor('the job log', async () => {
      const text = (await exec(spec.runDir, ['cat', job.logPath])).stdout;
      return text.includes('bg-err') ? text : undefined;
    });
    assert.match(log, /bg-out\nbg-err\n|bg-err\nbg-out\n/);
    // The job is adopted by the box's init and is exactly the returned pid.
    const stat = await out(spec.runDir, ['cat', `/proc/${job.pid}/stat`]);
    assert.equal(stat.split(') ')[1]?.split(' ')[1], '1');
    assert.equal(await out(spec.runDir, ['cat', `/proc/${job.pid}/comm`]), 'sleep');

    const asAlice = await execBackground(spec.runDir, { command: ['id -u'], shell: true, user: 'alice' });
    await waitFor('alice job log', async () => ((await exec(spec.runDir, ['cat', asAlice.logPath])).stdout === '1000\n' ? true : undefined));
  });

  test('leaves the host mount table alone', () => {
    assert.deepEqual(hostMounts(pool, scratch), mountsBefore);
  });

  test('the init outlives the process that started it', async () => {
    const spec2 = makeBox('b2');
    const sandboxUrl = new URL('../../src/runtime/sandbox.js', import.meta.url).href;
    const script = `const m = await import(${JSON.stringify(sandboxUrl)}); const r = await m.startBox(JSON.parse(process.argv[1])); console.log(r.pid);`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script, JSON.stringify(spec2)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (text += c));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 0);
    const pid = Number(text.trim());
    assert.ok(alive(pid));
    assert.equal(await boxStatus(spec2.runDir, spec2.root), 'running');
    assert.equal(await out(spec2.runDir, ['hostname']), 'b2.proj');
    assert.deepEqual(await startBox(spec2), { pid });
    assert.equal(await stopBox(spec2.runDir), 'stopped');
  });

  test('stop kills every process of the box and nothing else', async () => {
    const { pid } = await startBox(spec);
    await execBackground(spec.runDir, { command: ['sleep', '300'] });
    const running = execInBox(spec.runDir, { command: ['sleep', '300'] });
    await sleep(100);
    const pids = pidsInNamespaceOf(pid);
    assert.ok(pids.length >= 4, `expected init, keeper and two sleeps: ${pids.join(',')}`);

    assert.equal(await stopBox(spec.runDir), 'stopped');
    for (const p of pids) assert.ok(!alive(p), `pid ${p} survived the stop`);
    assert.equal(await running.exited, 137);
    assert.equal(await boxStatus(spec.runDir, spec.root), 'stopped');
    assert.equal(await stopBox(spec.runDir), 'not_running');
    assert.throws(() => execInBox(spec.runDir, { command: ['true'] }), { code: 'ZOMG_BOX_NOT_RUNNING' });
    await assert.rejects(execBackground(spec.runDir, { command: ['true'] }), { code: 'ZOMG_BOX_NOT_RUNNING' });
    assert.deepEqual(hostMounts(pool, scratch), mountsBefore);
    // Nothing the runtime started is left behind (bwrap's monitor exits with the init).
    await waitFor('bwrap monitors to exit', () => (childrenNamed('bwrap').length === 0 ? true : undefined));
  });

  test('resolves the root\'s symlinks inside the root, and reports a start that fails', async () => {
    const spec3 = makeBox('b3');
    // An absolute symlink where a volume goes must not lead bwrap (or zomg) onto the host.
    const escape = `/zomg-escape-test-${process.pid}`;
    rmSync(join(spec3.root, 'home'), { recursive: true, force: true });
    execFileSync('ln', ['-s', escape, join(spec3.root, 'home')]);
    execFileSync('ln', ['-sfn', '../../../../../../etc/dns-target', join(spec3.root, 'etc/resolv.conf')]);
    await startBox(spec3);
    await out(spec3.runDir, ['touch', '/home/through-link']);
    assert.ok(statSync(join(vols.home, 'through-link')).isFile());
    assert.ok(statSync(join(spec3.root, escape)).isDirectory(), 'the mountpoint is created inside the root');
    assert.throws(() => statSync(escape), { code: 'ENOENT' });
    assert.equal(await out(spec3.runDir, ['cat', '/etc/resolv.conf']), boxResolvConf().trim());
    assert.equal(readFileSync(join(spec3.root, 'etc/dns-target'), 'utf8'), '', 'the link target inside the root is the mountpoint');
    assert.throws(() => statSync('/etc/dns-target'), { code: 'ENOENT' });
    assert.equal(await stopBox(spec3.runDir), 'stopped');

    // A rootfs with no `sleep` cannot keep a box alive: a typed error, nothing left behind.
    rmSync(join(spec3.root, 'bin/sleep'));
    await assert.rejects(startBox(spec3), { code: 'ZOMG_BOX_START_FAILED' });
    assert.equal(await boxStatus(spec3.runDir, spec3.root), 'stopped');
    assert.equal(await stopBox(spec3.runDir), 'not_running');
    await waitFor('bwrap monitors to exit', () => (childrenNamed('bwrap').length === 0 ? true : undefined));
  });

  test('a stale pid file reads as stopped, and the box starts again', async () => {
    const record = join(spec.runDir, 'init.json');
    const stale = (patch: Record<string, unknown>): void => {
      writeFileSync(record, JSON.stringify({ version: 1, id: spec.id, pid: process.pid, startTime: 1, bootId: 'x', rootDev: 0, rootIno: 0, hostname: '', env: {}, path: '', ...patch }));
    };
    const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    const selfStart = Number(readFileSync('/proc/self/stat', 'utf8').split(') ')[1]?.split(' ')[19]);
    // A live pid that is another process (pid reuse: other start time).
    stale({ bootId: boot });
    assert.equal(await boxStatus(spec.runDir, spec.root), 'stopped');
    // A pid file from before a reboot.
    stale({ startTime: selfStart });
    assert.equal(await boxStatus(spec.runDir, spec.root), 'stopped');
    // The very process, alive, but its root is not the box's.
    stale({ startTime: selfStart, bootId: boot });
    assert.equal(await boxStatus(spec.runDir, spec.root), 'stopped');
    assert.equal(await stopBox(spec.runDir), 'not_running'); // and it is not killed (we are still here)
    stale({ bootId: boot });
    assert.throws(() => execInBox(spec.runDir, { command: ['true'] }), { code: 'ZOMG_BOX_NOT_RUNNING' });

    const envMtime = statSync(join(spec.root, 'etc/boxes-env')).mtimeMs;
    const { pid } = await startBox(spec);
    assert.ok(alive(pid));
    assert.equal(await out(spec.runDir, ['cat', '/box/all/f']), 'all'); // volumes and root survive stop/start
    assert.equal(statSync(join(spec.root, 'etc/boxes-env')).mtimeMs, envMtime, 'an unchanged /etc/boxes-env is not rewritten');
    assert.equal(readFileSync(join(spec.root, 'etc/bash.bashrc'), 'utf8').split('zomg: box environment').length, 2, 'the hook is added once');
    assert.equal(await stopBox(spec.runDir), 'stopped');
    assert.equal(await stopBox(spec.runDir), 'not_running');
  });
});

/** Host pids of this test process's children with that command name. */
function childrenNamed(comm: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (name === comm && ppid === process.pid) pids.push(Number(entry));
    } catch {
      /* exited meanwhile */
    }
  }
  return pids;
}
