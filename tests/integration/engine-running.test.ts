import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough, Readable, Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import type { ZomgError } from '../../src/core/errors.js';
import type { BoxName, ProjectName } from '../../src/core/names.js';
import type { ExecRequest } from '../../src/core/service.js';
import { type TestEngine, makeTestEngine } from '../helpers/engine.js';
import { busyboxRootfsTar } from '../helpers/fixtures.js';
import { isRoot } from '../helpers/pool.js';

const ref = (name: string, project = 'alpha') => ({ project: project as ProjectName, name: name as BoxName });
const code = (c: string) => (err: unknown) => (err as ZomgError).code === c;

describe('engine: running boxes', { skip: !isRoot() && 'needs root for btrfs' }, () => {
  let t: TestEngine;

  const run = async (box: string, command: string[], opts: Partial<ExecRequest> & { input?: string; project?: string } = {}) => {
    let stdout = '';
    let stderr = '';
    const sink = (fn: (s: string) => void) => new Writable({ write: (c: Buffer, _e, cb) => (fn(c.toString()), cb()) });
    const { exit_code } = await t.engine.exec(ref(box, opts.project), { command, ...opts }, {
      ...(opts.input !== undefined ? { stdin: Readable.from([Buffer.from(opts.input)]) } : {}),
      stdout: sink((s) => (stdout += s)),
      stderr: sink((s) => (stderr += s)),
    });
    return { exit_code, stdout, stderr };
  };
  const hostPids = (): number[] =>
    readdirSync('/proc').filter((p) => /^\d+$/.test(p)).map(Number);

  before(async () => {
    t = await makeTestEngine({ apiUrl: 'http://127.0.0.1:7070' });
    await t.engine.importBase('bb', busyboxRootfsTar());
  });
  after(async () => t?.cleanup());

  it('create starts the box: its own hostname, pid namespace, /proc, /dev, /tmp and environment', async () => {
    const box = await t.engine.createBox(ref('web'), { base: 'bb', environment: { GREETING: 'hello world' } });
    assert.equal(box.status, 'running');
    assert.equal((await run('web', ['hostname'])).stdout, 'web.alpha\n');
    const env = await run('web', ['sh', '-c', 'echo "$ZOMG_PROJECT|$BOX_NAME|$ZOMG_API_URL|$TERM|$GREETING"']);
    assert.equal(env.stdout, 'alpha|web|http://127.0.0.1:7070|xterm-256color|hello world\n');
    assert.match((await run('web', ['cat', '/etc/boxes-env'])).stdout, /BOX_NAME='web'[\s\S]*GREETING='hello world'/);
    assert.equal((await run('web', ['sh', '-c', 'echo $$'])).stdout.trim().length <= 3, true);
    assert.match((await run('web', ['stat', '-c', '%a', '/tmp'])).stdout, /^1777/);
    assert.equal((await run('web', ['sh', '-c', 'echo x > /dev/null && ls /proc/1/status'])).exit_code, 0);
  });

  it('pipes stdin, keeps the exit code, 127 for a missing command, --sh, --wd, --env', async () => {
    assert.deepEqual(await run('web', ['cat'], { input: 'through the pipe' }), { exit_code: 0, stdout: 'through the pipe', stderr: '' });
    assert.equal((await run('web', ['sh', '-c', 'exit 7'])).exit_code, 7);
    assert.equal((await run('web', ['no-such-command'])).exit_code, 127);
    assert.equal((await run('web', ['echo $((6*7))'], { shell: true })).stdout, '42\n');
    assert.equal((await run('web', ['pwd'], { cwd: '/etc' })).stdout, '/etc\n');
    assert.equal((await run('web', ['sh', '-c', 'echo $FOO'], { env: { FOO: 'bar' } })).stdout, 'bar\n');
    await assert.rejects(run('web', ['pwd'], { cwd: '/nope' }), code('ZOMG_NO_SUCH_DIRECTORY'));
    await assert.rejects(run('web', ['id'], { user: 'nobody-here' }), code('ZOMG_UNKNOWN_USER'));
    await assert.rejects(run('web', ['true'], { env: { BOX_NAME: 'x' } }), /environment variable is reserved/);
    await assert.rejects(run('nobox', ['true']), code('ZOMG_BOX_NOT_FOUND'));
    await assert.rejects(t.engine.createBox(ref('bad'), { base: 'bb', environment: { ZOMG_PROJECT: 'x' } }), /environment variable is reserved/);
  });

  it('runs detached commands with --bg, logging in the box', async () => {
    const bg = await t.engine.execBackground(ref('web'), { command: ['sh', '-c', 'echo from-bg'] });
    assert.equal(bg.log_path, `/tmp/boxes/exec/${bg.pid}.log`);
    let log = '';
    for (let i = 0; i < 50 && !log.includes('from-bg'); i++) {
      log = (await run('web', ['cat', bg.log_path])).stdout;
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(log, 'from-bg\n');
  });

  it('mounts the system and project volumes, shared as documented, and never in the root', async () => {
    await t.engine.createBox(ref('api'), { base: 'bb' });
    await t.engine.createBox(ref('other', 'beta'), { base: 'bb' });
    await run('web', ['sh', '-c', 'echo all > /box/all/f; echo proj > /box/proj/f; mkdir -p /home/alice; echo home > /home/alice/f']);
    assert.equal((await run('api', ['cat', '/box/all/f', '/box/proj/f', '/home/alice/f'])).stdout, 'all\nproj\nhome\n');
    assert.equal((await run('other', ['cat', '/box/all/f'], { project: 'beta' })).stdout, 'all\n');
    assert.notEqual((await run('other', ['cat', '/box/proj/f'], { project: 'beta' })).exit_code, 0);
    assert.notEqual((await run('web', ['touch', '/box/bin/x'])).exit_code, 0, '/box/bin is read-only');
    const box = await t.engine.getBox(ref('web'));
    assert.ok(!existsSync(join(t.pool.mnt, 'roots', box.id, 'box', 'all', 'f')));
    assert.ok(!existsSync(join(t.pool.mnt, 'roots', box.id, 'home', 'alice')));
    // Not in snapshots or diffs either.
    await t.engine.createSnapshot(ref('web'));
    await run('web', ['sh', '-c', 'echo more > /box/all/g; echo more > /home/alice/g; echo root > /in-root']);
    assert.ok(!existsSync(join(t.pool.mnt, 'checkpoints', box.id, 'v0', 'box', 'all', 'f')));
    const diff = await t.engine.diffStatus(ref('web'));
    assert.deepEqual(diff.changes.map((c) => `${c.kind} ${c.path}`), ['added /in-root']);
  });

  it('runs project users with a shared /home/<user>', async () => {
    await run('web', ['sh', '-c', 'echo "bob:x:1001:1001::/home/bob:/bin/sh" >> /etc/passwd; echo "bob:x:1001:" >> /etc/group']);
    const who = await run('web', ['sh', '-c', 'id -u; echo $HOME; touch ~/mine; ls -n ~/mine | cut -d" " -f3-4'], { user: 'bob' });
    assert.equal(who.exit_code, 0, who.stderr);
    assert.match(who.stdout, /^1001\n\/home\/bob\n/);
  });

  it('stops and resumes, idempotently, keeping the root; a stopped box refuses exec with a hint', async () => {
    const before = await t.engine.getBox(ref('api'));
    const stopped = await t.engine.stopBox(ref('api'));
    assert.equal(stopped.changed, true);
    assert.equal(stopped.box.status, 'stopped');
    assert.equal((await t.engine.stopBox(ref('api'))).changed, false);
    await assert.rejects(run('api', ['true']), (err: unknown) => code('ZOMG_BOX_STOPPED')(err) && /zomg resume/.test((err as ZomgError).hint ?? ''));
    assert.equal((await t.engine.resumeBox(ref('api'))).changed, true);
    assert.equal((await t.engine.resumeBox(ref('api'))).changed, false);
    assert.equal((await t.engine.getBox(ref('api'))).status, 'running');
    assert.equal(before.id, (await t.engine.getBox(ref('api'))).id);
    assert.equal((await run('api', ['cat', '/box/all/f'])).stdout, 'all\n');
  });

  it('restore of a running box stops it, swaps the root and resumes it', async () => {
    await run('web', ['sh', '-c', 'echo after > /marker']);
    const init = (await run('web', ['cat', '/proc/1/stat'])).stdout;
    await t.engine.restoreSnapshot(ref('web'), 'v0');
    assert.equal((await t.engine.getBox(ref('web'))).status, 'running');
    assert.notEqual((await run('web', ['ls', '/marker'])).exit_code, 0);
    assert.notEqual((await run('web', ['cat', '/proc/1/stat'])).stdout, init, 'a fresh init after the swap');
  });

  it('delete of a running box stops it first and leaks no process or mount', async () => {
    const box = await t.engine.getBox(ref('api'));
    const pidsBefore = new Set(hostPids());
    const initPid = JSON.parse(readFileSync(join(t.stateDir, 'run', 'boxes', box.id, 'init.json'), 'utf8')).pid as number;
    assert.ok(pidsBefore.has(initPid));
    await t.engine.deleteBox(ref('api'));
    assert.ok(!hostPids().includes(initPid));
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8');
    assert.ok(!mounts.includes(box.id), 'no mount of the box on the host');
  });

  it('reports the real state: a box whose init was killed reads stopped', async () => {
    const box = await t.engine.getBox(ref('web'));
    const initPid = JSON.parse(readFileSync(join(t.stateDir, 'run', 'boxes', box.id, 'init.json'), 'utf8')).pid as number;
    process.kill(initPid, 'SIGKILL');
    for (let i = 0; i < 100 && (await t.engine.getBox(ref('web'))).status === 'running'; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal((await t.engine.getBox(ref('web'))).status, 'stopped');
    assert.equal((await t.engine.resumeBox(ref('web'))).box.status, 'running');
    void PassThrough;
  });
});
