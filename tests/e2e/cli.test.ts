/**
 * The built CLI as a user runs it, in local mode and against `zomg serve` (remote mode),
 * on a test pool: identical output in both modes, exit codes, JSON errors.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { busyboxRootfsTar } from '../helpers/fixtures.js';
import { type TestPool, isRoot, makeTestPool } from '../helpers/pool.js';
import { MAIN, type Served, startServe } from '../helpers/cli.js';


interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

describe('zomg CLI (local and remote)', { skip: !isRoot() && 'needs root for btrfs' }, () => {
  let pool: TestPool;
  let stateDir: string;
  let server: Served | undefined;
  let url = '';
  let env: NodeJS.ProcessEnv;

  const zomg = (args: string[], extraEnv: NodeJS.ProcessEnv = {}): Result => {
    const r = spawnSync(process.execPath, [MAIN, ...args], { env: { ...env, ...extraEnv }, encoding: 'utf8', timeout: 120_000 });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  const remote = (args: string[]): Result => zomg(args, { ZOMG_URL: url });

  before(async () => {
    pool = makeTestPool(1024);
    stateDir = mkdtempSync(join(tmpdir(), 'zomg-e2e-'));
    env = { ...process.env, ZOMG_HOME: stateDir, ZOMG_POOL_PATH: pool.mnt, ZOMG_NO_SIZE_WORKER: '1', ZOMG_PROJECT: '', ZOMG_URL: '', ZOMG_API_URL: '', ZOMG_PROFILE: '' };
    delete env.ZOMG_PROJECT;
    delete env.ZOMG_URL;
    delete env.ZOMG_API_URL;
    delete env.ZOMG_PROFILE;
    server = await startServe(env);
    url = server.url;
  });

  after(async () => {
    await server?.stop();
    pool?.cleanup();
    if (stateDir) rmSync(stateDir, { recursive: true, force: true });
  });

  it('imports a base and lists it with the same output in both modes', () => {
    const imp = zomg(['base', 'import', 'bb', '--file', busyboxRootfsTar()]);
    assert.equal(imp.code, 0, imp.stderr);
    assert.match(imp.stdout, /Imported bb \(alias bb\)/);
    const local = zomg(['base', 'list']);
    assert.equal(local.code, 0, local.stderr);
    assert.match(local.stdout, /^NAME\s+VERSION\s+SIZE\s+CREATED\nbb\s+bb\s+/);
    assert.equal(remote(['base', 'list']).stdout, local.stdout);
    assert.equal(remote(['base', 'list', '--json']).stdout, zomg(['base', 'list', '-j']).stdout);
    assert.equal(JSON.parse(zomg(['base', 'list', '--json']).stdout)[0].name, 'bb');
  });

  it('imports through the remote CLI (streamed upload)', () => {
    const r = remote(['base', 'import', 'bb', '--file', busyboxRootfsTar()]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Imported bb-v\d{14} \(alias bb\)/);
    assert.match(remote(['base', 'inspect', 'bb']).stdout, /VERSION\s+KIND\s+TAG\s+BUILDER\s+PARENT\s+SIZE\s+CREATED\nbb\s+import/);
  });

  it('creates, lists, inspects and deletes boxes in both modes', () => {
    assert.equal(zomg(['create', 'one', '--base', 'bb', '-t', 'env=dev', '-p', 'proj']).code, 0);
    const created = remote(['create', 'two', '--base', 'bb', '-p', 'proj', '--json']);
    assert.equal(created.code, 0, created.stderr);
    assert.equal(JSON.parse(created.stdout).name, 'two');
    const list = zomg(['list', '-p', 'proj']);
    assert.match(list.stdout, /^NAME\s+STATUS\s+BASE\s+CREATED\none\s+\S+\s+bb-v\d{14}/);
    assert.equal(remote(['list', '-p', 'proj']).stdout, list.stdout);
    assert.equal(zomg(['list', '-p', 'proj', '-q']).stdout, 'one\ntwo\n');
    assert.equal(remote(['list', '-a', '-q']).stdout, 'proj:one\nproj:two\n');
    assert.equal(zomg(['list', '-p', 'proj', '-q', '-t', 'env=dev']).stdout, 'one\n');
    assert.match(zomg(['info', 'proj:one']).stdout, /NAME\s+one\nPROJECT\s+proj/);
    assert.equal(remote(['info', 'proj.one']).stdout, zomg(['info', 'proj:one']).stdout);
    assert.equal(remote(['delete', 'two', '-p', 'proj']).code, 0);
    assert.equal(zomg(['list', '-p', 'proj', '-q']).stdout, 'one\n');
  });

  it('snapshots in both modes, concurrently from several processes', async () => {
    const run = (args: string[], extra: NodeJS.ProcessEnv = {}): Promise<Result> =>
      new Promise((resolve) => {
        const child = spawn(process.execPath, [MAIN, ...args], { env: { ...env, ...extra } });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
        child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
        child.on('close', (code) => resolve({ code, stdout, stderr }));
      });
    const results = await Promise.all([
      ...Array.from({ length: 4 }, () => run(['snapshot', 'create', 'proj:one', '--json'])),
      ...Array.from({ length: 4 }, () => run(['snapshot', 'create', 'proj:one', '--json'], { ZOMG_URL: url })),
    ]);
    for (const r of results) assert.equal(r.code, 0, r.stderr);
    const names = results.map((r) => JSON.parse(r.stdout).name as string);
    assert.equal(new Set(names).size, 8);
    const list = zomg(['snapshot', 'list', 'proj:one']);
    assert.match(list.stdout, /^NAME\s+SIZE\s+CREATED\s+DESCRIPTION\nv0\s/);
    assert.equal(remote(['snapshot', 'list', 'proj:one']).stdout, list.stdout);
    assert.equal(zomg(['snapshot', 'create', 'proj:one', 'x1', '--name', 'named', '-m', 'a description']).stdout, 'Created snapshot named of proj:one\n');
    assert.equal(remote(['snapshot', 'restore', 'proj:one', 'v0']).stdout, 'Restored proj:one to snapshot v0\n');
    assert.equal(zomg(['snapshot', 'delete', 'proj:one', 'named']).code, 0);
  });

  it('prints errors with hints, stable codes in JSON, and exit codes 1 and 2', () => {
    const missing = zomg(['info', 'nope', '-p', 'proj']);
    assert.equal(missing.code, 1);
    assert.equal(missing.stderr, 'error: box "proj:nope" not found\nhint: run `zomg list` to see your boxes\n');
    assert.equal(remote(['info', 'nope', '-p', 'proj']).stderr, missing.stderr);
    const asJson = remote(['info', 'nope', '-p', 'proj', '--json']);
    assert.deepEqual(JSON.parse(asJson.stdout), { error: { code: 'ZOMG_BOX_NOT_FOUND', message: 'box "proj:nope" not found', hint: 'run `zomg list` to see your boxes' } });
    assert.equal(zomg(['create', 'x', '--base', 'bb', '--fork', 'one']).code, 2);
    assert.equal(zomg(['base', 'import', 'bb']).code, 2);
    assert.equal(zomg(['no-such-command']).code, 2);
    const bad = zomg(['create', 'Bad--Name']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /invalid box name "Bad--Name": it contains uppercase letters/);
    const profile = zomg(['list'], { ZOMG_PROFILE: 'staging' });
    assert.match(profile.stderr, /^error: profile "staging" is selected but ZOMG_PROFILE_STAGING_URL is not set\nhint: set ZOMG_PROFILE_STAGING_URL, or select another profile/);
    const notTar = zomg(['base', 'import', 'junk', '--file', MAIN]);
    assert.equal(notTar.code, 1);
    assert.match(notTar.stderr, /^error: the file is not a tar archive/m);
    assert.equal(notTar.stderr.split('\n').filter((l) => l.startsWith('error: ')).length, 1);
    const unauth = zomg(['base', 'list'], { ZOMG_URL: url, ZOMG_HOME: '/nonexistent' });
    assert.equal(unauth.code, 1);
    assert.match(unauth.stderr, /missing bearer token/);
  });

  it('execs in both modes: stdin through, output streamed, exit code kept', () => {
    for (const mode of [zomg, remote]) {
      const r = spawnSync(process.execPath, [MAIN, 'exec', 'proj:one', '--', 'sh', '-c', 'cat; echo oops >&2; exit 4'], {
        env: { ...env, ...(mode === remote ? { ZOMG_URL: url } : {}) },
        input: 'fed through stdin\n',
        encoding: 'utf8',
      });
      assert.equal(r.status, 4, r.stderr);
      assert.equal(r.stdout, 'fed through stdin\n');
      assert.equal(r.stderr, 'oops\n');
      assert.equal(mode(['exec', 'proj:one', '--', 'no-such-command']).code, 127);
      assert.equal(mode(['exec', 'proj:one', '--sh', '--', 'echo $BOX_NAME.$ZOMG_PROJECT']).stdout, 'one.proj\n');
      assert.match(mode(['exec', 'proj:one', '--bg', '--', 'sleep', '1']).stdout, /^\d+\n$/);
      assert.equal(mode(['exec', '-', '-b', 'bb', '-p', 'proj', '--', 'hostname']).code, 0);
    }
    assert.equal(zomg(['list', '-p', 'proj', '-q']).stdout, 'one\n', 'ephemeral boxes are deleted afterwards');
  });

  it('stops and resumes with clear messages; a stopped box refuses exec with a hint', () => {
    assert.equal(zomg(['stop', 'proj:one']).stdout, 'Stopped proj:one\n');
    assert.equal(remote(['stop', 'proj:one']).stdout, 'proj:one was already stopped\n');
    const refused = remote(['exec', 'proj:one', '--', 'true']);
    assert.equal(refused.code, 1);
    assert.equal(refused.stderr, 'error: box "proj:one" is stopped\nhint: start it with `zomg resume proj:one`\n');
    assert.match(zomg(['list', '-p', 'proj']).stdout, /one\s+stopped/);
    assert.equal(remote(['resume', 'proj:one']).stdout, 'Resumed proj:one\n');
    assert.equal(zomg(['resume', 'proj:one']).stdout, 'proj:one is already running\n');
    assert.equal(zomg(['create', 'x', '-e', 'BOX_NAME=y', '-p', 'proj']).stderr, 'error: BOX_NAME: environment variable is reserved\nhint: run `zomg create --help` for its usage\n');
  });

  it('reads and writes the setup config; its profile selects the target', () => {
    const setup = mkdtempSync(join(tmpdir(), 'zomg-setup-'));
    const c = (...args: string[]) => zomg(['config', ...args], { ZOMG_SETUP_DIR: setup });
    try {
      assert.equal(c('path').stdout, `${join(setup, 'config.yaml')}\n`);
      assert.equal(c('list').stdout, 'No configuration\n');
      assert.equal(c('set', 'ssh_host', 'ssh.example.test').code, 0);
      assert.equal(c('get', 'ssh_host').stdout, 'ssh.example.test\n');
      assert.equal(c('get', 'nope').code, 1);
      assert.equal(c('set', 'profile', 'staging').code, 0);
      assert.match(c('list').stdout, /^KEY\s+VALUE\nprofile\s+staging\nssh_host\s+ssh\.example\.test\n$/);
      const listed = zomg(['list'], { ZOMG_SETUP_DIR: setup });
      assert.match(listed.stderr, /^error: profile "staging" is selected but ZOMG_PROFILE_STAGING_URL is not set\nhint: /);
      // A profile never borrows the local server's token: it brings its own.
      assert.match(zomg(['list', '-p', 'proj', '-q'], { ZOMG_SETUP_DIR: setup, ZOMG_PROFILE_STAGING_URL: url }).stderr, /missing bearer token/);
      const token = readFileSync(join(stateDir, 'token'), 'utf8').trim();
      assert.equal(zomg(['list', '-p', 'proj', '-q'], { ZOMG_SETUP_DIR: setup, ZOMG_PROFILE_STAGING_URL: url, ZOMG_PROFILE_STAGING_TOKEN: token }).stdout, 'one\n');
      assert.equal(c('unset', 'profile').code, 0);
      assert.equal(zomg(['list', '-p', 'proj', '-q'], { ZOMG_SETUP_DIR: setup }).stdout, 'one\n');
    } finally {
      rmSync(setup, { recursive: true, force: true });
    }
  });

  it('prints the resolved project', () => {
    assert.equal(zomg(['project', 'current'], { ZOMG_PROJECT: 'from-env' }).stdout, 'from-env\n');
  });
});
