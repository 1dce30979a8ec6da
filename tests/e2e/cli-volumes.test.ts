/** `zomg data …` through the built CLI, in local mode and against `zomg serve` (remote): same output both ways. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
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

describe('zomg data (local and remote)', { skip: !isRoot() && 'needs root for btrfs' }, () => {
  let pool: TestPool;
  let stateDir: string;
  let scratch: string;
  let server: Served | undefined;
  let env: NodeJS.ProcessEnv;
  let url = '';

  const zomg = (args: string[], extra: NodeJS.ProcessEnv = {}): Result => {
    const r = spawnSync(process.execPath, [MAIN, ...args], { env: { ...env, ...extra }, encoding: 'utf8', timeout: 120_000 });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  const ok = (args: string[], extra: NodeJS.ProcessEnv = {}): string => {
    const r = zomg(args, extra);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const remote = { ZOMG_URL: '' };

  before(async () => {
    pool = makeTestPool(1024);
    stateDir = mkdtempSync(join(tmpdir(), 'zomg-e2e-data-'));
    scratch = mkdtempSync(join(tmpdir(), 'zomg-e2e-backups-'));
    env = { ...process.env, ZOMG_HOME: stateDir, ZOMG_POOL_PATH: pool.mnt, ZOMG_NO_SIZE_WORKER: '1', ZOMG_PROJECT: 'demo' };
    delete env.ZOMG_URL;
    delete env.ZOMG_API_URL;
    delete env.ZOMG_PROFILE;
    server = await startServe(env);
    url = server.url;
    remote.ZOMG_URL = url;
    ok(['base', 'import', 'bb', '--file', busyboxRootfsTar()]);
  });
  after(async () => {
    await server?.stop();
    pool?.cleanup();
    if (stateDir) rmSync(stateDir, { recursive: true, force: true });
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  it('creates, attaches with -d, lists and shows volumes the same way locally and remotely', () => {
    assert.match(ok(['data', 'create', 'cache']), /Created volume demo:cache/);
    assert.match(ok(['data', 'create', 'copy', '--from', 'cache'], remote), /Created volume demo:copy from cache/);
    ok(['create', 'web', '--base', 'bb', '-d', 'cache=/var/cache/app', '-d', 'copy=/ro:ro']);
    assert.equal(ok(['exec', 'web', '--', 'sh', '-c', 'echo hi > /var/cache/app/f && cat /var/cache/app/f']), 'hi\n');
    const ro = zomg(['exec', 'web', '--', 'sh', '-c', 'touch /ro/x']);
    assert.notEqual(ro.code, 0);
    const local = ok(['data', 'list']);
    assert.equal(ok(['data', 'list'], remote), local);
    assert.match(local, /^NAME\s+OWNERSHIP\s+SIZE\s+ATTACHED\s+CREATED/);
    assert.match(local, /cache\s+persistent\s+-\s+web:\/var\/cache\/app\s/);
    assert.match(local, /copy\s+persistent\s+-\s+web:\/ro:ro\s/);
    const json = JSON.parse(ok(['data', 'list', '-j'])) as Array<{ name: string }>;
    assert.deepEqual(json.map((v) => v.name), ['cache', 'copy']);
    assert.equal(ok(['data', 'info', 'cache'], remote), ok(['data', 'info', 'cache']));
    const info = JSON.parse(ok(['info', 'web', '--json'])) as { data_mounts: unknown };
    assert.deepEqual(info.data_mounts, [{ name: 'cache', path: '/var/cache/app', read_only: false }, { name: 'copy', path: '/ro', read_only: true }]);
    assert.match(ok(['info', 'web']), /DATA\s+cache=\/var\/cache\/app, copy=\/ro:ro/);
  });

  it('refuses bad input with exit codes, messages and JSON errors', () => {
    ok(['data', 'create', 'spare']);
    for (const [args, code] of [
      [['create', 'bad', '--base', 'bb', '-d', 'cache'], 'ZOMG_INVALID_DATA_MOUNT'],
      [['create', 'bad', '--base', 'bb', '-d', 'cache=/x:rx'], 'ZOMG_INVALID_DATA_MOUNT'],
      [['create', 'bad', '--base', 'bb', '-d', 'cache=rel'], 'ZOMG_INVALID_DATA_MOUNT'],
      [['data', 'delete', 'cache'], 'ZOMG_VOLUME_ATTACHED'],
      [['data', 'create', 'cache'], 'ZOMG_VOLUME_EXISTS'],
      [['data', 'info', 'nope'], 'ZOMG_VOLUME_NOT_FOUND'],
      [['data', 'attach', 'web', 'spare=/other'], 'ZOMG_BOX_RUNNING'],
      [['data', 'attach', 'web', 'copy=/other'], 'ZOMG_VOLUME_ALREADY_ATTACHED'],
      [['data', 'backup', 'create', 'cache', '--to', 'gs://bucket'], 'ZOMG_UNSUPPORTED_BACKUP_TARGET'],
    ] as Array<[string[], string]>) {
      for (const extra of [{}, remote]) {
        const r = zomg([...args, '--json'], extra);
        assert.equal(r.code, 1, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
        assert.equal((JSON.parse(r.stdout) as { error: { code: string } }).error.code, code, args.join(' '));
      }
    }
    const r = zomg(['data', 'delete', 'cache']);
    assert.match(r.stderr, /error: volume "demo:cache" is attached to box demo:web/);
    assert.equal(zomg(['data', 'create', 'x', '--from-snapshot', 'v0']).code, 2);
    assert.equal(zomg(['data', 'backup', 'create', 'cache']).code, 2);
    const running = zomg(['data', 'detach', 'web', 'copy']);
    assert.match(running.stderr, /zomg stop/);
  });

  it('snapshots, diffs, restores and backs up through the CLI, restoring remotely what was backed up locally', () => {
    assert.match(ok(['data', 'snapshot', 'create', 'cache', '-m', 'first']), /Created snapshot v0 of volume demo:cache/);
    ok(['exec', 'web', '--', 'sh', '-c', 'echo more >> /var/cache/app/f && echo n > /var/cache/app/new']);
    const diff = ok(['data', 'diff', 'cache']);
    assert.equal(diff, ok(['data', 'diff', 'cache'], remote));
    assert.match(diff, /\+ \/new/);
    assert.match(diff, /~ \/f/);
    assert.match(ok(['data', 'diff', 'file', 'cache', '/f']), /\/f: modified[^]*\+more/);
    assert.match(ok(['data', 'snapshot', 'list', 'cache'], remote), /v0\s+.*first/);
    const target = join(scratch, 'target');
    mkdirSync(target);
    assert.match(ok(['data', 'backup', 'create', 'cache', '--to', `file://${target}`]), /as v0 \(full/);
    ok(['exec', 'web', '--', 'sh', '-c', 'echo later > /var/cache/app/later']);
    assert.match(ok(['data', 'backup', 'create', 'cache', '--to', `file://${target}`], remote), /as v1 \(incremental after v0/);
    const listed = ok(['data', 'backup', 'list', '--from', `file://${target}`]);
    assert.equal(listed, ok(['data', 'backup', 'list', '--from', `file://${target}`], remote));
    assert.match(listed, /cache\s+v0\s+full\s+-/);
    assert.match(listed, /cache\s+v1\s+incremental\s+v0/);
    assert.match(ok(['data', 'backup', 'restore', 'cache/v1', '--from', `file://${target}`, '--to', 'restored'], remote), /into volume demo:restored/);
  });

  it('restores a volume snapshot under a running box and keeps root diffs root-only', () => {
    ok(['snapshot', 'create', 'web']);
    ok(['data', 'snapshot', 'restore', 'cache', 'v0']);
    assert.equal(ok(['exec', 'web', '--', 'cat', '/var/cache/app/f']), 'hi\n');
    ok(['exec', 'web', '--', 'sh', '-c', 'echo x > /var/cache/app/y']);
    assert.equal(ok(['diff', 'status', 'web']).trim(), 'No changes');
    const refused = zomg(['diff', 'file', 'web', '/var/cache/app/y']);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /data volume "cache"/);
  });

  it('forks boxes with their volumes and deletes box-owned volumes with the fork', () => {
    ok(['stop', 'web']);
    ok(['create', 'fork', '--fork', 'web']);
    const vols = JSON.parse(ok(['data', 'list', '-j'], remote)) as Array<{ name: string; ownership: string; owner: string | null }>;
    const owned = vols.filter((v) => v.ownership === 'box_owned');
    assert.equal(owned.length, 2);
    for (const v of owned) assert.match(v.name, /^box-fork-[0-9a-f]{12}$/);
    assert.equal(ok(['exec', 'fork', '--', 'cat', '/var/cache/app/f']), 'hi\n');
    ok(['delete', 'fork'], remote);
    assert.equal((JSON.parse(ok(['data', 'list', '-j'])) as unknown[]).length, vols.length - 2);
    ok(['delete', 'web']);
    assert.match(ok(['data', 'delete', 'cache']), /Deleted volume demo:cache/);
  });
});
