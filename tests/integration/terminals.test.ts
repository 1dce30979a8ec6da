/**
 * Terminals, files, processes and logs of a box, through the engine and the HTTP API, on a
 * real pool with real ptys, real tar and a real WebSocket over loopback.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { WebSocket } from 'ws';
import { buildServer } from '../../src/api/server.js';
import type { TerminalSession } from '../../src/core/console-protocol.js';
import type { ZomgError } from '../../src/core/errors.js';
import type { BoxName, ProjectName } from '../../src/core/names.js';
import { type TestEngine, makeTestEngine } from '../helpers/engine.js';
import { busyboxRootfsTar } from '../helpers/fixtures.js';
import { isRoot } from '../helpers/pool.js';

const TOKEN = 'test-token-terminals-0123';
const ref = (name: string) => ({ project: 'alpha' as ProjectName, name: name as BoxName });
const code = (c: string) => (err: unknown) => (err as ZomgError).code === c;

/**
 * Collects a terminal's output and waits for text in it. Answers the cursor-position query
 * (ESC [6n) that busybox's line editor sends, as a terminal emulator does.
 */
function screen(session: TerminalSession): { text(): string; waitFor(re: RegExp, ms?: number): Promise<string> } {
  let out = '';
  const waiters: Array<() => void> = [];
  session.onData((chunk) => {
    const text = chunk.toString('utf8');
    if (text.includes('\x1b[6n')) session.write('\x1b[1;1R');
    out += text;
    for (const w of waiters.splice(0)) w();
  });
  const waitFor = async (re: RegExp, ms = 10_000): Promise<string> => {
    const deadline = Date.now() + ms;
    while (!re.test(out)) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${re} in ${JSON.stringify(out)}`);
      await new Promise<void>((resolve) => {
        waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
    return out;
  };
  return { text: () => out, waitFor };
}

function sink(): { stream: Writable; text(): string } {
  const chunks: Buffer[] = [];
  return { stream: new Writable({ write: (c: Buffer, _e, cb) => (chunks.push(c), cb()) }), text: () => Buffer.concat(chunks).toString('utf8') };
}

/** A tree with a symlink, a 0700 directory, a file owned by uid 1000 and an old timestamp. */
function makeTree(parent: string): string {
  const tree = join(parent, 'tree');
  mkdirSync(join(tree, 'priv'), { recursive: true });
  writeFileSync(join(tree, 'a.txt'), 'hello\n');
  chownSync(join(tree, 'a.txt'), 1000, 1000);
  utimesSync(join(tree, 'a.txt'), new Date('2020-01-02T03:04:05Z'), new Date('2020-01-02T03:04:05Z'));
  symlinkSync('a.txt', join(tree, 'link'));
  chmodSync(join(tree, 'priv'), 0o700);
  writeFileSync(join(tree, 'priv', 'secret'), 's\n');
  return tree;
}

/** rsync's itemized dry run: empty when the trees agree in content, modes, owners, links and times. */
function rsyncDiff(a: string, b: string): string {
  return execFileSync('rsync', ['-rlpgoDtn', '--numeric-ids', '-i', `${a}/`, `${b}/`], { encoding: 'utf8' });
}

describe('terminals, files, processes and logs', { skip: !isRoot() && 'needs root for btrfs' }, () => {
  let t: TestEngine;
  let app: FastifyInstance;
  let wsBase = '';
  let httpBase = '';
  let work: string;

  before(async () => {
    t = await makeTestEngine();
    await t.engine.importBase('bb', busyboxRootfsTar());
    await t.engine.createBox(ref('web'), { base: 'bb' });
    app = await buildServer({ service: t.engine, token: TOKEN });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const addr = app.server.address();
    assert(addr && typeof addr === 'object');
    httpBase = `http://127.0.0.1:${addr.port}/v1/projects/alpha/boxes/web`;
    wsBase = httpBase.replace(/^http/, 'ws');
    work = mkdtempSync(join(tmpdir(), 'zomg-cp-'));
  });
  after(async () => {
    await app?.close();
    await t?.cleanup();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('a terminal in the box: its own /dev/pts/N, the window size, resize, Ctrl-C to the job, the exit code', async () => {
    const session = await t.engine.openTerminal(ref('web'), { command: ['sh'], cols: 100, rows: 30 });
    const s = screen(session);
    await s.waitFor(/# /);
    session.write('tty; stty size\r');
    await s.waitFor(/\/dev\/pts\/\d+\r?\n30 100/);
    session.resize(132, 43);
    session.write('stty size\r');
    await s.waitFor(/43 132/);
    session.write('sleep 100\r');
    await new Promise((r) => setTimeout(r, 300));
    const started = Date.now();
    session.write('\x03');
    await s.waitFor(/\^C/);
    // The job ended, the shell lives on and saw it die of SIGINT.
    session.write('echo "after=$?"\r');
    await s.waitFor(/after=130/);
    assert.ok(Date.now() - started < 10_000);
    session.write('exit 7\r');
    assert.equal(await session.exited, 7);
  });

  it('a login shell by default; a stopped box, a bad size and an unknown user are clear errors', async () => {
    const session = await t.engine.openTerminal(ref('web'), { cols: 80, rows: 24 });
    const s = screen(session);
    await s.waitFor(/# /);
    session.write('echo "shell=$0"; exit\r');
    await s.waitFor(/shell=-?sh/);
    assert.equal(await session.exited, 0);
    await assert.rejects(t.engine.openTerminal(ref('web'), { cols: 0, rows: 24 }), code('ZOMG_INVALID_TERMINAL_SIZE'));
    await assert.rejects(t.engine.openTerminal(ref('web'), { cols: 80, rows: 1e6 }), code('ZOMG_INVALID_TERMINAL_SIZE'));
    await assert.rejects(t.engine.openTerminal(ref('web'), { cols: 80, rows: 24, user: 'nobody-here' }), code('ZOMG_UNKNOWN_USER'));
    await t.engine.createBox(ref('off'), { base: 'bb', start: false });
    await assert.rejects(t.engine.openTerminal(ref('off'), { cols: 80, rows: 24 }), (err: unknown) => code('ZOMG_BOX_STOPPED')(err) && /zomg resume/.test((err as ZomgError).hint ?? ''));
  });

  it('a box that stops ends its terminal session', async () => {
    await t.engine.createBox(ref('brief'), { base: 'bb' });
    const session = await t.engine.openTerminal(ref('brief'), { command: ['sleep', '100'], cols: 80, rows: 24 });
    await new Promise((r) => setTimeout(r, 200));
    await t.engine.stopBox(ref('brief'));
    assert.ok((await session.exited) > 128);
  });

  it('processes and background logs: ps, the last lines, following to the end, clear errors', async () => {
    const bg = await t.engine.execBackground(ref('web'), { command: ['sh', '-c', 'for i in 1 2 3 4; do echo line$i; sleep 0.2; done'] });
    const procs = await t.engine.listProcesses(ref('web'));
    assert.ok(procs.some((p) => p.pid === 1 && p.user === 'root'));
    assert.ok(procs.some((p) => p.pid === bg.pid && /for i in/.test(p.command)), JSON.stringify(procs));
    const followed = sink();
    await t.engine.readLogs(ref('web'), bg.pid, followed.stream, { follow: true });
    assert.equal(followed.text(), 'line1\nline2\nline3\nline4\n');
    const tail = sink();
    await t.engine.readLogs(ref('web'), bg.pid, tail.stream, { lines: 2 });
    assert.equal(tail.text(), 'line3\nline4\n');
    await assert.rejects(t.engine.readLogs(ref('web'), 2, sink().stream), code('ZOMG_NOT_A_BACKGROUND_EXEC'));
    await assert.rejects(t.engine.readLogs(ref('web'), 99999, sink().stream), code('ZOMG_PROCESS_NOT_FOUND'));
    await assert.rejects(t.engine.readLogs(ref('web'), 0, sink().stream), code('ZOMG_INVALID_PID'));
    await assert.rejects(t.engine.listProcesses(ref('off')), code('ZOMG_BOX_STOPPED'));
  });

  it('copies a tree in and out (running and stopped box) keeping modes, owners, symlinks and times', async () => {
    const src = makeTree(join(work, 'src'));
    for (const box of ['web', 'off']) {
      const tar = new PassThrough();
      const packing = new Promise<void>((resolve, reject) => {
        const p = spawnSync('tar', ['-c', '-f', '-', '--numeric-owner', '-C', join(work, 'src'), 'tree']);
        if (p.status !== 0) reject(new Error(p.stderr.toString()));
        tar.end(p.stdout);
        resolve();
      });
      await packing;
      await t.engine.copyToBox(ref(box), '/root/', tar);
      const out = join(work, `out-${box}`);
      mkdirSync(out);
      const got = new PassThrough();
      const extract = new Promise<void>((resolve, reject) => {
        const chunks: Buffer[] = [];
        got.on('data', (c: Buffer) => chunks.push(c));
        got.on('end', () => {
          try {
            execFileSync('tar', ['-x', '-f', '-', '--numeric-owner', '-p', '-C', out], { input: Buffer.concat(chunks) });
            resolve();
          } catch (err) {
            reject(err);
          }
        });
      });
      await t.engine.copyFromBox(ref(box), '/root/tree', got);
      got.end();
      await extract;
      assert.equal(rsyncDiff(src, join(out, 'tree')), '', `box ${box}`);
    }
  });

  it('copy errors: unknown box, a path above the root, a missing source, a directory over a file', async () => {
    await assert.rejects(t.engine.copyFromBox(ref('nope'), '/etc', sink().stream), code('ZOMG_BOX_NOT_FOUND'));
    await assert.rejects(t.engine.copyFromBox(ref('web'), '/../../etc/passwd', sink().stream), code('ZOMG_PATH_ESCAPES'));
    await assert.rejects(t.engine.copyFromBox(ref('web'), '/no/such', sink().stream), code('ZOMG_PATH_NOT_FOUND'));
    const dirTar = () => {
      const s = new PassThrough();
      s.end(execFileSync('tar', ['-c', '-f', '-', '-C', join(work, 'src'), 'tree']));
      return s;
    };
    await assert.rejects(t.engine.copyToBox(ref('web'), '/etc/passwd', dirTar()), code('ZOMG_NOT_A_DIRECTORY'));
    await assert.rejects(t.engine.copyToBox(ref('web'), '/no/such/dir', dirTar()), code('ZOMG_PATH_NOT_FOUND'));
    await assert.rejects(t.engine.copyToBox(ref('off'), '/home/x', dirTar()), code('ZOMG_BOX_STOPPED'));
    // An archive that climbs out is refused by the gate before tar sees it.
    const evil = new PassThrough();
    evil.end(execFileSync('tar', ['-c', '-f', '-', '-P', '--transform=s|^|../../|', '-C', join(work, 'src'), 'tree/a.txt']));
    await assert.rejects(t.engine.copyToBox(ref('web'), '/tmp', evil, { into: true }), code('ZOMG_UNSAFE_ARCHIVE'));
  });

  it('API: the console WebSocket needs a token, runs a terminal, refuses nonsense sizes', async () => {
    const unauth = await new Promise<number>((resolve) => {
      const ws = new WebSocket(`${wsBase}/console`);
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('open', () => resolve(101));
      ws.on('error', () => undefined);
    });
    assert.equal(unauth, 401);

    const talk = (first: object | null, query = ''): Promise<{ ws: WebSocket; out: () => string; end: Promise<Record<string, unknown>> }> =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(`${wsBase}/console${query}`, { headers: { authorization: `Bearer ${TOKEN}` } });
        let out = '';
        const end = new Promise<Record<string, unknown>>((done) => {
          ws.on('message', (data: Buffer, binary: boolean) => {
            if (binary && data.includes('\x1b[6n')) ws.send(Buffer.from('\x1b[1;1R'), { binary: true });
            if (binary) out += data.toString('utf8');
            else done(JSON.parse(data.toString('utf8')) as Record<string, unknown>);
          });
        });
        ws.on('open', () => {
          if (first) ws.send(JSON.stringify(first));
          resolve({ ws, out: () => out, end });
        });
        ws.on('error', reject);
      });

    const a = await talk({ command: ['sh'], cols: 90, rows: 20 });
    a.ws.send(JSON.stringify({ type: 'resize', cols: 111, rows: 33 }));
    await new Promise((r) => setTimeout(r, 500));
    a.ws.send(Buffer.from('tty; stty size; exit 3\r'), { binary: true });
    assert.deepEqual(await a.end, { type: 'exit', exit_code: 3 });
    assert.match(a.out(), /\/dev\/pts\/\d+\r?\n33 111/);

    const b = await talk(null, '?cols=80&rows=24&command=sh&command=-c&command=exit%204');
    assert.deepEqual(await b.end, { type: 'exit', exit_code: 4 });

    const c = await talk({ command: ['sh'], cols: 80, rows: 24 });
    c.ws.send(JSON.stringify({ type: 'resize', cols: -1, rows: 99999 }));
    const refused = await c.end;
    assert.equal(refused.type, 'error');
    assert.equal(refused.code, 'ZOMG_INVALID_TERMINAL_SIZE');

    const d = await talk({ cols: 80, rows: 24 }, '');
    d.ws.close();
    const stopped = await talk(null, '?cols=80&rows=24');
    void stopped;
    const e = await new Promise<Record<string, unknown>>((resolve, reject) => {
      const ws = new WebSocket(`${httpBase.replace(/^http/, 'ws').replace('/boxes/web', '/boxes/off')}/console?cols=80&rows=24`, { headers: { authorization: `Bearer ${TOKEN}` } });
      ws.on('message', (data: Buffer) => resolve(JSON.parse(data.toString('utf8')) as Record<string, unknown>));
      ws.on('error', reject);
    });
    assert.equal(e.code, 'ZOMG_BOX_STOPPED');
    assert.equal(e.statusCode, 409);
    stopped.ws.close();
  });

  it('API: files as tar streams, processes and logs', async () => {
    const auth = { authorization: `Bearer ${TOKEN}` };
    const put = await fetch(`${httpBase}/files?path=${encodeURIComponent('/srv-copy')}`, {
      method: 'PUT',
      headers: { ...auth, 'content-type': 'application/x-tar' },
      body: execFileSync('tar', ['-c', '-f', '-', '--numeric-owner', '-C', join(work, 'src'), 'tree']),
    });
    assert.equal(put.status, 204, await put.text());
    const get = await fetch(`${httpBase}/files?path=/srv-copy`, { headers: auth });
    assert.equal(get.status, 200);
    assert.equal(get.headers.get('content-type'), 'application/x-tar');
    const listing = execFileSync('tar', ['-t', '-v', '--numeric-owner', '-f', '-'], { input: Buffer.from(await get.arrayBuffer()), encoding: 'utf8' });
    assert.match(listing, /-rw-r--r-- 1000\/1000 +6 2020-01-02 03:04 srv-copy\/a\.txt/);
    assert.match(listing, /srv-copy\/link -> a\.txt/);
    assert.match(listing, /drwx------ 0\/0 .* srv-copy\/priv\//);

    const missing = await fetch(`${httpBase}/files?path=/nope`, { headers: auth });
    assert.equal(missing.status, 404);
    assert.equal(((await missing.json()) as { code: string }).code, 'ZOMG_PATH_NOT_FOUND');
    const escape = await fetch(`${httpBase}/files?path=${encodeURIComponent('/../x')}`, { headers: auth });
    assert.equal(escape.status, 400);
    assert.equal((await fetch(`${httpBase}/files?path=/etc`)).status, 401);

    const bg = await t.engine.execBackground(ref('web'), { command: ['sh', '-c', 'echo one; echo two'] });
    await new Promise((r) => setTimeout(r, 300));
    const procs = (await (await fetch(`${httpBase}/processes`, { headers: auth })).json()) as { processes: Array<{ pid: number; user: string }> };
    assert.ok(procs.processes.some((p) => p.pid === 1 && p.user === 'root'));
    const logs = await fetch(`${httpBase}/logs?pid=${bg.pid}&lines=1&follow=true`, { headers: auth });
    assert.equal(logs.status, 200);
    assert.equal(await logs.text(), 'two\n');
    const notBg = await fetch(`${httpBase}/logs?pid=1`, { headers: auth });
    assert.equal(notBg.status, 404);
    assert.equal(((await notBg.json()) as { code: string }).code, 'ZOMG_NOT_A_BACKGROUND_EXEC');
  });
});
