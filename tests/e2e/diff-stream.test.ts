/**
 * `zomg diff status` streamed: the CLI prints while the diff is verified, in local and
 * remote mode, byte for byte what the whole result renders to; the API answers NDJSON to
 * clients that ask for it and the usual JSON to the others.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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

describe('zomg diff status, streamed (local, remote, NDJSON)', { skip: !isRoot() && 'needs root for btrfs' }, () => {
  let pool: TestPool;
  let stateDir: string;
  let server: Served | undefined;
  let env: NodeJS.ProcessEnv;
  let root = '';
  let project = '';

  const zomg = (args: string[], extraEnv: NodeJS.ProcessEnv = {}): Result => {
    const r = spawnSync(process.execPath, [MAIN, ...args], { env: { ...env, ...extraEnv }, encoding: 'utf8', timeout: 120_000, maxBuffer: 64 * 1024 * 1024 });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  const remote = (args: string[]): Result => zomg(args, { ZOMG_URL: server?.url ?? '' });
  const diffUrl = (box: string): string => `${server?.url}/v1/projects/${project}/boxes/${box}/diff`;
  const auth = (): Record<string, string> => ({ authorization: `Bearer ${readFileSync(join(stateDir, 'token'), 'utf8').trim()}` });

  before(async () => {
    pool = makeTestPool(1024);
    stateDir = mkdtempSync(join(tmpdir(), 'zomg-e2e-diff-'));
    env = { ...process.env, ZOMG_HOME: stateDir, ZOMG_POOL_PATH: pool.mnt, ZOMG_NO_SIZE_WORKER: '1' };
    for (const k of ['ZOMG_PROJECT', 'ZOMG_URL', 'ZOMG_API_URL', 'ZOMG_PROFILE']) delete env[k];
    server = await startServe(env);
    assert.equal(zomg(['base', 'import', 'bb', '--file', busyboxRootfsTar()]).code, 0);
    const created = zomg(['create', 'box', '--base', 'bb', '--json']);
    assert.equal(created.code, 0, created.stderr);
    const box = JSON.parse(created.stdout) as { id: string; project: string };
    root = join(pool.mnt, 'roots', box.id);
    project = box.project;
    assert.equal(zomg(['create', 'empty', '--base', 'bb']).code, 0);
  });

  after(async () => {
    await server?.stop();
    pool?.cleanup();
    if (stateDir) rmSync(stateDir, { recursive: true, force: true });
  });

  it('prints the same bytes as the whole result would, in both modes, text and --json', () => {
    assert.equal(zomg(['snapshot', 'create', 'box']).code, 0);
    assert.equal(zomg(['diff', 'status', 'box']).stdout, 'No changes\n');
    assert.equal(remote(['diff', 'status', 'box']).stdout, 'No changes\n');
    const none = zomg(['diff', 'status', 'box', '--json']);
    assert.equal(none.stdout, `${JSON.stringify(JSON.parse(none.stdout), null, 2)}\n`);
    assert.deepEqual(JSON.parse(none.stdout).changes, []);

    // Enough paths for several output chunks, a name that is not UTF-8, a change and a deletion.
    mkdirSync(join(root, 'many'));
    for (let i = 0; i < 3000; i++) writeFileSync(join(root, 'many', `file-${String(i).padStart(4, '0')}`), `${i}\n`);
    writeFileSync(Buffer.concat([Buffer.from(`${root}/odd-`), Buffer.of(0xff)]), 'x');
    writeFileSync(join(root, 'etc', 'passwd'), 'root:x:0:0::/root:/bin/sh\n');
    rmSync(join(root, 'etc', 'group'));

    const local = zomg(['diff', 'status', 'box', '--json']);
    assert.equal(local.code, 0, local.stderr);
    const status = JSON.parse(local.stdout) as { method: string; against: string; to: null; changes: Array<{ path: string; path_b64?: string; kind: string }> };
    assert.equal(local.stdout, `${JSON.stringify(status, null, 2)}\n`, 'the streamed JSON is json(status)');
    assert.deepEqual(Object.keys(status), ['box', 'project', 'against', 'to', 'method', 'changes']);
    assert.equal(status.method, 'send');
    assert.equal(status.changes.length, 3000 + 4);
    assert.deepEqual(status.changes.slice(0, 2), [
      { path: '/etc/group', kind: 'deleted' },
      { path: '/etc/passwd', kind: 'modified' },
    ]);
    assert.deepEqual(status.changes[2], { path: '/many', kind: 'added' });
    assert.deepEqual(status.changes.at(-1), { path: '/odd-\\xff', path_b64: Buffer.concat([Buffer.from('/odd-'), Buffer.of(0xff)]).toString('base64'), kind: 'added' });
    assert.equal(remote(['diff', 'status', 'box', '--json']).stdout, local.stdout, 'remote mode prints the same');

    const text = zomg(['diff', 'status', 'box']);
    const lines = text.stdout.split('\n');
    assert.equal(lines.length, 3000 + 4 + 1);
    assert.deepEqual(lines.slice(0, 3), ['- /etc/group', '~ /etc/passwd', '+ /many']);
    assert.equal(lines.at(-2), '+ /odd-\\xff');
    assert.equal(lines.at(-1), '');
    assert.equal(remote(['diff', 'status', 'box']).stdout, text.stdout);
  });

  it('answers NDJSON when asked (status line, then one change per line), JSON otherwise', async () => {
    const whole = (await (await fetch(diffUrl('box'), { headers: auth() })).json()) as { changes: unknown[] };
    const res = await fetch(diffUrl('box'), { headers: { ...auth(), accept: 'application/x-ndjson' } });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^application\/x-ndjson/);
    const lines = (await res.text()).split('\n');
    assert.equal(lines.pop(), '');
    const [head, ...changes] = lines.map((l) => JSON.parse(l) as unknown);
    const { changes: wholeChanges, ...wholeHead } = whole;
    assert.deepEqual(head, wholeHead);
    assert.deepEqual(changes, wholeChanges);
    assert.equal(changes.length, 3004);
  });

  it('an error before the first line is an ordinary error response, in both modes', async () => {
    const res = await fetch(diffUrl('empty'), { headers: { ...auth(), accept: 'application/x-ndjson' } });
    assert.equal(res.status, 404);
    assert.equal(((await res.json()) as { code: string }).code, 'ZOMG_NO_SNAPSHOT');
    for (const r of [zomg(['diff', 'status', 'empty', '--json']), remote(['diff', 'status', 'empty', '--json'])]) {
      assert.notEqual(r.code, 0);
      assert.equal((JSON.parse(r.stdout) as { error: { code: string } }).error.code, 'ZOMG_NO_SNAPSHOT');
    }
  });
});
