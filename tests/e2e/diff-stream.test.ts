/**
 * `zomg diff status` and `zomg data diff` streamed: the CLI prints while the diff is
 * verified, in local and remote mode, byte for byte what the whole result renders to; the
 * API answers NDJSON to clients that ask for it and the usual JSON to the others; a client
 * that leaves mid-stream ends the diff (no temporary snapshot left, the server unharmed), and
 * so does a CLI whose reader left (`| head`); a non-blocking pipe gets the whole output.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { type IncomingMessage, createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { diffEntryFromJson, diffEntryToJson, renderDiffText, type DiffEntryJson } from '../../src/core/diff.js';
import { busyboxRootfsTar } from '../helpers/fixtures.js';
import { type TestPool, isRoot, makeTestPool } from '../helpers/pool.js';
import { MAIN, type Served, startServe } from '../helpers/cli.js';

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Adds `count` files with long names under `dir`: about 270 bytes per NDJSON line. A client
 * that stops reading still lets the server's socket take up to net.ipv4.tcp_wmem's maximum
 * (4 MiB here) plus its own receive buffer, so a diff must print well beyond that to be
 * still running when the client leaves: 40,000 lines are ~11 MB (20,000 were once not enough).
 */
function fillLongNames(dir: string, count: number): void {
  mkdirSync(dir);
  const stem = 'n'.repeat(200);
  for (let i = 0; i < count; i++) writeFileSync(join(dir, `${stem}-${String(i).padStart(6, '0')}`), '');
}

/**
 * A python3 program that runs its arguments with stdout on a pipe it made non-blocking (the
 * descriptor is shared: the program's writes meet EAGAIN when the pipe is full), reads nothing
 * for a second, then reads it all and passes it on, or (`leave`) reads one block and closes it.
 */
function slowReader(leave: boolean): string {
  return [
    'import os, subprocess, sys, time',
    'r, w = os.pipe()',
    'os.set_blocking(w, False)',
    'p = subprocess.Popen(sys.argv[1:], stdout=w, stderr=subprocess.PIPE)',
    'os.close(w)',
    'time.sleep(1)',
    ...(leave
      ? ['os.read(r, 4096)', 'os.close(r)']
      : ['chunks = []', 'while True:', '    chunk = os.read(r, 4096)', '    if not chunk: break', '    chunks.append(chunk)', 'sys.stdout.buffer.write(b"".join(chunks))']),
    'sys.stderr.buffer.write(p.stderr.read())',
    'sys.exit(p.wait())',
  ].join('\n');
}

/** GET `url` as NDJSON: checks the answer is that, and returns its lines parsed. */
async function ndjsonLines(url: string, headers: Record<string, string>): Promise<unknown[]> {
  const res = await fetch(url, { headers: { ...headers, accept: 'application/x-ndjson' } });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^application\/x-ndjson/);
  const lines = (await res.text()).split('\n');
  assert.equal(lines.pop(), '');
  return lines.map((l) => JSON.parse(l) as unknown);
}

/**
 * Reads the first bytes of an NDJSON diff (`url`) and stops reading; checks that the diff is
 * still being delivered (its temporary snapshot, matched by `temporary` in the pool's staging
 * area, is held); closes the connection; and waits for the temporary snapshot to go. (Through
 * node:http, whose destroy() closes the socket: an aborted fetch() may read the rest of the
 * body to keep the connection.)
 */
async function leaveMidStream(url: string, headers: Record<string, string>, staging: string, temporary: RegExp, firstLine: RegExp): Promise<void> {
  const temporaries = (): string[] => readdirSync(staging).filter((n) => temporary.test(n));
  assert.deepEqual(temporaries(), []);
  const req = request(url, { headers: { ...headers, accept: 'application/x-ndjson' } });
  const res = await new Promise<IncomingMessage>((resolve, reject) => req.once('response', resolve).once('error', reject).end());
  assert.equal(res.statusCode, 200);
  const first = await new Promise<Buffer>((resolve) => res.once('data', resolve));
  res.pause();
  assert.match(first.toString(), firstLine);
  await sleep(500);
  assert.equal(temporaries().length, 1, 'the diff is still being delivered when the client leaves');
  req.destroy();
  for (let i = 0; i < 400 && temporaries().length > 0; i++) await sleep(50);
  assert.deepEqual(temporaries(), [], 'the temporary snapshot is deleted once the client has left');
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
    assert.equal(status.method, 'tree');
    assert.equal(status.changes.length, 3000 + 4);
    assert.deepEqual(status.changes.slice(0, 2), [
      { path: '/etc/group', kind: 'deleted' },
      { path: '/etc/passwd', kind: 'modified' },
    ]);
    assert.deepEqual(status.changes[2], { path: '/many', kind: 'added' });
    assert.deepEqual(status.changes.at(-1), { path: '/odd-\\xff', path_b64: Buffer.concat([Buffer.from('/odd-'), Buffer.of(0xff)]).toString('base64'), kind: 'added' });
    assert.equal(remote(['diff', 'status', 'box', '--json']).stdout, local.stdout, 'remote mode prints the same');
    // btrfs-progs in place of zomg's own ioctls (snapshot, send, delete; no tree searches
    // without them): the same changes, found by the send.
    const progs = zomg(['diff', 'status', 'box', '--json'], { ZOMG_BTRFS_PROGS: '1' }).stdout;
    assert.equal(progs, local.stdout.replace('"method": "tree"', '"method": "send"'), 'the same through btrfs-progs');
    // A diff needs nothing secret and starts no program: node:crypto and node:child_process
    // (milliseconds of every start each) are never loaded, nor node:net and node:fs/promises.
    const preload = join(stateDir, 'modules.cjs');
    const loadedList = join(stateDir, 'modules.txt');
    writeFileSync(preload, `process.on('exit', () => require('node:fs').writeFileSync(${JSON.stringify(loadedList)}, process.moduleLoadList.join('\\n')));`);
    assert.equal(zomg(['diff', 'status', 'box', '--json'], { NODE_OPTIONS: `--require=${preload}` }).stdout, local.stdout);
    const loaded = readFileSync(loadedList, 'utf8').split('\n');
    assert.ok(!loaded.includes('NativeModule crypto'), 'node:crypto stays unloaded');
    assert.ok(!loaded.includes('NativeModule child_process'), 'node:child_process stays unloaded');
    // Its output goes out with write(2) (cli/stdio.ts): stdout and stderr are pipes here, for
    // which Node's own streams would load net; and storage takes fs/promises on first use only.
    assert.ok(!loaded.includes('NativeModule net'), 'node:net stays unloaded');
    assert.ok(!loaded.includes('NativeModule fs/promises'), 'node:fs/promises stays unloaded');

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
    const [head, ...changes] = await ndjsonLines(diffUrl('box'), auth());
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

  it('a client that leaves mid-stream ends the diff: the temporary snapshot goes, the box lock is released, the server serves on', async () => {
    const created = zomg(['create', 'big', '--base', 'bb', '--json']);
    assert.equal(created.code, 0, created.stderr);
    const big = JSON.parse(created.stdout) as { id: string };
    assert.equal(zomg(['snapshot', 'create', 'big']).code, 0);
    fillLongNames(join(pool.mnt, 'roots', big.id, 'many'), 40_000);
    await leaveMidStream(diffUrl('big'), auth(), join(pool.mnt, 'staging'), /^\d+-diff-/, /^\{"box":"big",/);
    assert.ok(server?.alive(), 'the server is still running');
    const again = remote(['diff', 'status', 'big']);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout.split('\n').length, 40_001 + 1);
    assert.equal(remote(['snapshot', 'create', 'big']).code, 0, 'the box is not left locked');
  });

  it('a reader that stops reading (`| head -1`) ends the CLI quietly with status 141, in both modes', () => {
    const staging = join(pool.mnt, 'staging');
    for (const [mode, extra] of [
      ['local', ''],
      ['remote', `ZOMG_URL=${server?.url ?? ''} `],
    ] as const) {
      for (const json of ['', ' --json']) {
        // 40,000 changes against the first snapshot: far more than a pipe holds.
        const script = `${extra}${JSON.stringify(process.execPath)} ${JSON.stringify(MAIN)} diff status big --against v0${json} | head -1; echo "status \${PIPESTATUS[0]}"`;
        const r = spawnSync('bash', ['-c', script], { env, encoding: 'utf8', timeout: 120_000 });
        const [first, status] = r.stdout.split('\n');
        assert.match(first ?? '', json ? /^\{$/ : /^\+ \/many$/, `${mode}${json}`);
        assert.equal(status, 'status 141', `${mode}${json}: the status of a program whose reader left`);
        assert.equal(r.stderr, '', `${mode}${json}: no error, no stack trace`);
        assert.deepEqual(readdirSync(staging).filter((n) => /^\d+-diff-/.test(n)), [], `${mode}${json}: no temporary snapshot left`);
      }
    }
    assert.ok(server?.alive(), 'the server is still running');
    assert.equal(zomg(['snapshot', 'create', 'big']).code, 0, 'the box is not left locked');
  });

  it('a non-blocking pipe that fills up (shared with a slow reader) still gets every byte, in order', () => {
    const whole = zomg(['diff', 'status', 'big', '--against', 'v0']);
    assert.equal(whole.code, 0, whole.stderr);
    // The CLI writes with write(2); here its stdout is a pipe another process made
    // non-blocking and reads only after a while, so writes meet EAGAIN and go on through Node's stream.
    const diff = [process.execPath, MAIN, 'diff', 'status', 'big', '--against', 'v0'];
    const r = spawnSync('python3', ['-c', slowReader(false), ...diff], { env, encoding: 'utf8', timeout: 120_000, maxBuffer: 64 * 1024 * 1024 });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.length, whole.stdout.length);
    assert.ok(r.stdout === whole.stdout, 'the same bytes as through a blocking pipe');
    assert.equal(r.stderr, whole.stderr);

    // The same pipe, whose reader leaves after a first read: the output, handed to Node's
    // stream by then, fails there; the CLI still ends quietly, and its temporary snapshot goes.
    const left = spawnSync('python3', ['-c', slowReader(true), ...diff], { env, encoding: 'utf8', timeout: 120_000 });
    assert.equal(left.stderr, '', 'no error, no stack trace');
    assert.equal(left.status, 141);
    assert.deepEqual(readdirSync(join(pool.mnt, 'staging')).filter((n) => /^\d+-diff-/.test(n)), [], 'no temporary snapshot left');
  });
});

describe('zomg data diff, streamed (local, remote, NDJSON)', { skip: !isRoot() && 'needs root for btrfs' }, () => {
  let pool: TestPool;
  let stateDir: string;
  let server: Served | undefined;
  let env: NodeJS.ProcessEnv;
  let project = '';

  const zomg = (args: string[], extraEnv: NodeJS.ProcessEnv = {}): Result => {
    const r = spawnSync(process.execPath, [MAIN, ...args], { env: { ...env, ...extraEnv }, encoding: 'utf8', timeout: 120_000, maxBuffer: 64 * 1024 * 1024 });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  const remote = (args: string[]): Result => zomg(args, { ZOMG_URL: server?.url ?? '' });
  const ok = (r: Result): string => {
    assert.equal(r.code, 0, r.stderr);
    return r.stdout;
  };
  const diffUrl = (volume: string, query = ''): string => `${server?.url}/v1/projects/${project}/volumes/${volume}/diff${query}`;
  const auth = (): Record<string, string> => ({ authorization: `Bearer ${readFileSync(join(stateDir, 'token'), 'utf8').trim()}` });
  /** The volume's directory on the pool. */
  const createVolume = (name: string): string => {
    const v = JSON.parse(ok(zomg(['data', 'create', name, '--json']))) as { id: string; project: string };
    project = v.project;
    return join(pool.mnt, 'volumes', v.id);
  };
  /** The whole (non-streamed) JSON answer of the API. */
  const wholeAnswer = async (volume: string, query = ''): Promise<{ changes: DiffEntryJson[] }> => {
    const res = await fetch(diffUrl(volume, query), { headers: auth() });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    return (await res.json()) as { changes: DiffEntryJson[] };
  };
  /**
   * What `data diff --json` printed before it streamed: json() of the engine's result, whose
   * changes are diffEntryToJson's `{path, path_b64?, kind}` (the API's serializer orders a
   * change's keys by its schema, so its text is not the reference).
   */
  const renderedJson = (whole: { changes: DiffEntryJson[] }): string =>
    `${JSON.stringify({ ...whole, changes: whole.changes.map((c) => diffEntryToJson(diffEntryFromJson(c))) }, null, 2)}\n`;

  before(async () => {
    pool = makeTestPool(1024);
    stateDir = mkdtempSync(join(tmpdir(), 'zomg-e2e-vdiff-'));
    env = { ...process.env, ZOMG_HOME: stateDir, ZOMG_POOL_PATH: pool.mnt, ZOMG_NO_SIZE_WORKER: '1' };
    for (const k of ['ZOMG_PROJECT', 'ZOMG_URL', 'ZOMG_API_URL', 'ZOMG_PROFILE']) delete env[k];
    server = await startServe(env);
  });

  after(async () => {
    await server?.stop();
    pool?.cleanup();
    if (stateDir) rmSync(stateDir, { recursive: true, force: true });
  });

  it('prints what the whole result renders to, in both modes, text and --json, with a non-UTF-8 name', async () => {
    const dir = createVolume('data');
    writeFileSync(join(dir, 'keep'), '1\n');
    writeFileSync(join(dir, 'gone'), '1\n');
    ok(zomg(['data', 'snapshot', 'create', 'data']));
    for (const run of [zomg, remote]) {
      assert.equal(ok(run(['data', 'diff', 'data'])), 'No changes\n');
      assert.equal(ok(run(['data', 'diff', 'data', '--json'])), renderedJson(await wholeAnswer('data')));
    }

    // Enough paths for several output chunks, a name that is not UTF-8, a change and a deletion.
    mkdirSync(join(dir, 'many'));
    for (let i = 0; i < 3000; i++) writeFileSync(join(dir, 'many', `file-${String(i).padStart(4, '0')}`), `${i}\n`);
    writeFileSync(Buffer.concat([Buffer.from(`${dir}/odd-`), Buffer.of(0xff)]), 'x');
    writeFileSync(join(dir, 'keep'), '2\n');
    rmSync(join(dir, 'gone'));

    const whole = await wholeAnswer('data');
    const local = ok(zomg(['data', 'diff', 'data', '--json']));
    assert.equal(local, renderedJson(whole), 'the streamed JSON is json(status)');
    const status = JSON.parse(local) as { method: string; against: string; to: null; changes: DiffEntryJson[] };
    assert.deepEqual(Object.keys(status), ['volume', 'project', 'against', 'to', 'method', 'changes']);
    assert.equal(status.method, 'tree');
    assert.equal(status.changes.length, 3000 + 4);
    assert.deepEqual(status.changes.slice(0, 3), [
      { path: '/gone', kind: 'deleted' },
      { path: '/keep', kind: 'modified' },
      { path: '/many', kind: 'added' },
    ]);
    assert.deepEqual(status.changes.at(-1), { path: '/odd-\\xff', path_b64: Buffer.concat([Buffer.from('/odd-'), Buffer.of(0xff)]).toString('base64'), kind: 'added' });
    assert.equal(ok(remote(['data', 'diff', 'data', '--json'])), local, 'remote mode prints the same');

    const text = ok(zomg(['data', 'diff', 'data']));
    assert.equal(text, `${renderDiffText(whole.changes.map(diffEntryFromJson))}\n`, 'the streamed text is the whole rendering');
    const lines = text.split('\n');
    assert.equal(lines.length, 3000 + 4 + 1);
    assert.deepEqual(lines.slice(0, 3), ['- /gone', '~ /keep', '+ /many']);
    assert.equal(lines.at(-2), '+ /odd-\\xff');
    assert.equal(ok(remote(['data', 'diff', 'data'])), text);
    for (const run of [zomg, remote]) assert.equal(run(['data', 'diff', 'data']).stderr, '', 'nothing on stderr, as before');

    // Between two snapshots (--to): the same changes, the same bytes both ways.
    ok(zomg(['data', 'snapshot', 'create', 'data']));
    const between = ok(zomg(['data', 'diff', 'data', '--against', 'v0', '--to', 'v1', '--json']));
    assert.equal(between, renderedJson(await wholeAnswer('data', '?against=v0&to=v1')));
    assert.equal((JSON.parse(between) as { to: string }).to, 'v1');
    assert.deepEqual((JSON.parse(between) as { changes: unknown }).changes, status.changes);
    assert.equal(ok(remote(['data', 'diff', 'data', '--against', 'v0', '--to', 'v1', '--json'])), between);
    assert.equal(ok(remote(['data', 'diff', 'data', '--against', 'v0', '--to', 'v1'])), text);
  });

  it('answers NDJSON when asked (status line, then one change per line), JSON otherwise', async () => {
    for (const query of ['?against=v0', '?against=v0&to=v1']) {
      const whole = await wholeAnswer('data', query);
      const [head, ...changes] = await ndjsonLines(diffUrl('data', query), auth());
      const { changes: wholeChanges, ...wholeHead } = whole;
      assert.deepEqual(head, wholeHead);
      assert.deepEqual(Object.keys(head as object), ['volume', 'project', 'against', 'to', 'method']);
      assert.deepEqual(changes, wholeChanges);
      assert.equal(changes.length, 3004);
    }
  });

  it('reads a whole JSON answer the same way (a server from before volume diffs streamed, or a proxy that drops Accept)', async () => {
    // A loopback proxy to the real server that forwards every request without its Accept header.
    const proxy = createServer((req, res) => {
      const headers = Object.fromEntries(Object.entries(req.headers).filter(([k]) => k !== 'accept' && k !== 'host')) as Record<string, string>;
      fetch(`${server?.url}${req.url}`, { headers })
        .then(async (answer) => {
          res.writeHead(answer.status, { 'content-type': answer.headers.get('content-type') ?? 'application/octet-stream' });
          res.end(Buffer.from(await answer.arrayBuffer()));
        })
        .catch(() => res.destroy());
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    try {
      const address = proxy.address() as AddressInfo;
      // Run without blocking this process, which serves the proxy.
      const viaProxy = async (args: string[]): Promise<Result> => {
        const child = spawn(process.execPath, [MAIN, ...args], { env: { ...env, ZOMG_URL: `http://127.0.0.1:${address.port}` }, stdio: ['ignore', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
        child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
        const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
        return { code, stdout, stderr };
      };
      for (const args of [['data', 'diff', 'data', '--against', 'v0'], ['data', 'diff', 'data', '--against', 'v0', '--json']]) {
        const direct = ok(remote(args));
        assert.equal(ok(await viaProxy(args)), direct, args.join(' '));
      }
      const missing = await viaProxy(['data', 'diff', 'data', '--against', 'nope', '--json']);
      assert.equal(missing.code, 1);
      assert.equal((JSON.parse(missing.stdout) as { error: { code: string } }).error.code, 'ZOMG_VOLUME_SNAPSHOT_NOT_FOUND');
    } finally {
      await new Promise((resolve) => proxy.close(resolve));
    }
  });

  it('an error before the first line is an ordinary error response with its code, in both modes', async () => {
    createVolume('empty');
    for (const [volume, query, code] of [
      ['data', '?against=nope', 'ZOMG_VOLUME_SNAPSHOT_NOT_FOUND'],
      ['data', '?against=v0&to=nope', 'ZOMG_VOLUME_SNAPSHOT_NOT_FOUND'],
      ['empty', '', 'ZOMG_NO_SNAPSHOT'],
      ['nope', '', 'ZOMG_VOLUME_NOT_FOUND'],
    ] as const) {
      const res = await fetch(diffUrl(volume, query), { headers: { ...auth(), accept: 'application/x-ndjson' } });
      assert.equal(res.status, 404, `${volume}${query}`);
      assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
      assert.equal(((await res.json()) as { code: string }).code, code);
    }
    for (const args of [['data', 'diff', 'data', '--against', 'nope'], ['data', 'diff', 'empty']]) {
      const code = args.length > 3 ? 'ZOMG_VOLUME_SNAPSHOT_NOT_FOUND' : 'ZOMG_NO_SNAPSHOT';
      for (const r of [zomg([...args, '--json']), remote([...args, '--json'])]) {
        assert.equal(r.code, 1);
        assert.deepEqual(Object.keys(JSON.parse(r.stdout) as object), ['error'], 'only the error is printed');
        assert.equal((JSON.parse(r.stdout) as { error: { code: string } }).error.code, code);
      }
      for (const r of [zomg(args), remote(args)]) {
        assert.equal(r.code, 1);
        assert.equal(r.stdout, '');
        assert.match(r.stderr, /^error: /);
      }
    }
  });

  it('a client that leaves mid-stream ends the diff: the temporary snapshot goes, the volume lock is released, the server serves on', async () => {
    // Modified files: their verification needs no getfattr (the stream says their xattrs), so
    // nothing but the diff's own checks notices the abort.
    const dir = createVolume('big');
    fillLongNames(join(dir, 'many'), 40_000);
    ok(zomg(['data', 'snapshot', 'create', 'big']));
    for (const name of readdirSync(join(dir, 'many'))) writeFileSync(join(dir, 'many', name), 'changed');
    await leaveMidStream(diffUrl('big'), auth(), join(pool.mnt, 'staging'), /^\d+-vdiff-/, /^\{"volume":"big",/);
    assert.ok(server?.alive(), 'the server is still running');
    const again = remote(['data', 'diff', 'big']);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout.split('\n').length, 40_000 + 1);
    assert.match(again.stdout, /^~ \/many\/n+-000000$/m);
    assert.match(ok(remote(['data', 'snapshot', 'create', 'big'])), /Created snapshot v1/, 'the volume is not left locked');
  });
});
