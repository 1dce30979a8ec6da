/**
 * A real `zomg serve` over loopback, fed garbage at every route and on the exec WebSocket:
 * every answer is a 4xx with a ZOMG_ code, none is a 500, nothing half-made stays, and the
 * process is alive at the end. Then the input surfaces one by one (NUL in each), the exec
 * output cap, and the Host/Origin check of `--no-auth`.
 */
import assert from 'node:assert/strict';
import { createReadStream, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { WebSocket } from 'ws';
import { type Served, startServe } from '../helpers/cli.js';
import { busyboxRootfsTar } from '../helpers/fixtures.js';
import { type TestPool, isRoot, makeTestPool } from '../helpers/pool.js';

interface Answer {
  status: number;
  body: Record<string, unknown>;
  text: string;
}

interface WsOutcome {
  /** Set when the server answered the upgrade with an HTTP error. */
  httpStatus?: number;
  messages: Array<Record<string, unknown>>;
  output: string;
  closeCode?: number;
}

describe('zomg serve under hostile input', { skip: !isRoot() && 'needs root for btrfs' }, () => {
  let pool: TestPool;
  let stateDir: string;
  let server: Served | undefined;
  let env: NodeJS.ProcessEnv;
  let token = '';
  const failures: string[] = [];

  async function hit(method: string, path: string, init: { json?: unknown; raw?: string | Buffer; type?: string; headers?: Record<string, string> } = {}): Promise<Answer> {
    const headers: Record<string, string> = { authorization: `Bearer ${token}`, ...init.headers };
    let body: string | Buffer | undefined;
    if (init.json !== undefined) {
      body = JSON.stringify(init.json);
      headers['content-type'] = 'application/json';
    } else if (init.raw !== undefined) {
      body = init.raw;
      headers['content-type'] = init.type ?? 'application/json';
    }
    const res = await fetch(`${server?.url}${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
    const text = await res.text();
    let parsed: Record<string, unknown> = {};
    try {
      parsed = JSON.parse(text) as Record<string, unknown>;
    } catch {
      parsed = {};
    }
    return { status: res.status, body: parsed, text };
  }

  /** Records (rather than throws) an answer that is not a 4xx with a ZOMG_ code, so one run lists every offender. */
  function expect4xx(what: string, a: Answer, code?: string): void {
    const ok = a.status >= 400 && a.status < 500 && typeof a.body.code === 'string' && /^ZOMG_/.test(a.body.code) && (code === undefined || a.body.code === code);
    if (!ok) failures.push(`${what}: ${a.status} ${a.text.slice(0, 200)}`);
    if (a.text.length > 2000) failures.push(`${what}: a ${a.text.length}-byte error body`);
  }

  function ws(path: string, frames: Array<string | Buffer>, headers: Record<string, string> = { authorization: `Bearer ${token}` }): Promise<WsOutcome> {
    const url = `${server?.url.replace(/^http/, 'ws')}${path}`;
    return new Promise((resolve) => {
      const out: WsOutcome = { messages: [], output: '' };
      const socket = new WebSocket(url, { headers });
      const timer = setTimeout(() => socket.terminate(), 30_000);
      socket.on('unexpected-response', (_req, res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => {
          clearTimeout(timer);
          out.httpStatus = res.statusCode;
          try {
            out.messages.push(JSON.parse(text) as Record<string, unknown>);
          } catch {
            /* not JSON: recorded as no message */
          }
          resolve(out);
        });
      });
      socket.on('error', () => undefined);
      socket.on('open', () => {
        for (const f of frames) socket.send(f, { binary: Buffer.isBuffer(f) });
      });
      socket.on('message', (data: Buffer, isBinary: boolean) => {
        if (isBinary) out.output += data.subarray(1).toString();
        else out.messages.push(JSON.parse(data.toString()) as Record<string, unknown>);
      });
      socket.on('close', (code) => {
        clearTimeout(timer);
        out.closeCode = code;
        resolve(out);
      });
    });
  }

  function expectWsError(what: string, o: WsOutcome, code?: string): void {
    const msg = o.messages.find((m) => o.httpStatus !== undefined || m.type === 'error');
    const status = o.httpStatus ?? (msg?.statusCode as number | undefined);
    const ok = status !== undefined && status >= 400 && status < 500 && typeof msg?.code === 'string' && /^ZOMG_/.test(msg.code) && (code === undefined || msg.code === code);
    if (!ok) failures.push(`ws ${what}: ${JSON.stringify({ http: o.httpStatus, messages: o.messages, close: o.closeCode }).slice(0, 300)}`);
    if (msg && String(msg.message).length > 400) failures.push(`ws ${what}: a ${String(msg.message).length}-character error message`);
  }

  before(async () => {
    pool = makeTestPool(1024);
    stateDir = mkdtempSync(join(tmpdir(), 'zomg-hostile-'));
    env = { ...process.env, ZOMG_HOME: stateDir, ZOMG_POOL_PATH: pool.mnt, ZOMG_NO_SIZE_WORKER: '1' };
    for (const k of ['ZOMG_PROJECT', 'ZOMG_URL', 'ZOMG_API_URL', 'ZOMG_PROFILE']) delete env[k];
    server = await startServe(env);
    token = readFileSync(join(stateDir, 'token'), 'utf8').trim();
    const tar = busyboxRootfsTar();
    const res = await fetch(`${server.url}/v1/bases/bb/versions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream', 'content-length': String(statSync(tar).size) },
      body: Readable.toWeb(createReadStream(tar)) as unknown as RequestInit['body'],
      duplex: 'half',
    } as RequestInit);
    assert.equal(res.status, 201, await res.text());
    const box = await hit('POST', '/v1/projects/demo/boxes', { json: { name: 'web', base: 'bb' } });
    assert.equal(box.status, 201, box.text);
    assert.equal((await hit('POST', '/v1/projects/demo/boxes/web/checkpoints', { json: {} })).status, 201);
  });

  after(async () => {
    if (server?.alive()) {
      for (const name of ['web', 'piped']) await hit('DELETE', `/v1/projects/demo/boxes/${name}`).catch(() => undefined);
    }
    await server?.stop();
    pool?.cleanup();
    if (stateDir) rmSync(stateDir, { recursive: true, force: true });
  });

  const ROUTES: Array<[string, string]> = [
    ['GET', '/v1/projects/{p}/boxes'],
    ['POST', '/v1/projects/{p}/boxes'],
    ['GET', '/v1/projects/{p}/boxes/{n}'],
    ['PUT', '/v1/projects/{p}/boxes/{n}'],
    ['DELETE', '/v1/projects/{p}/boxes/{n}'],
    ['POST', '/v1/projects/{p}/boxes/{n}/stop'],
    ['POST', '/v1/projects/{p}/boxes/{n}/resume'],
    ['POST', '/v1/projects/{p}/boxes/{n}/exec'],
    ['GET', '/v1/projects/{p}/boxes/{n}/checkpoints'],
    ['POST', '/v1/projects/{p}/boxes/{n}/checkpoints'],
    ['GET', '/v1/projects/{p}/boxes/{n}/checkpoints/{c}'],
    ['DELETE', '/v1/projects/{p}/boxes/{n}/checkpoints/{c}'],
    ['POST', '/v1/projects/{p}/boxes/{n}/checkpoints/{c}/restore'],
    ['GET', '/v1/projects/{p}/boxes/{n}/diff'],
    ['GET', '/v1/projects/{p}/boxes/{n}/diff/file?path=/etc/passwd'],
    ['POST', '/v1/projects/{p}/bases'],
    ['GET', '/v1/bases/{b}'],
    ['POST', '/v1/bases/{b}/versions'],
    ['POST', '/v1/bases/{b}/install'],
    ['POST', '/v1/bases/{b}/build'],
    ['DELETE', '/v1/bases/{b}'],
    ['DELETE', '/v1/bases/{b}/versions/{v}'],
  ];
  const VALID: Record<string, string> = { p: 'demo', n: 'web', c: 'v0', b: 'bb', v: 'bb' };
  // Bad names, URL-encoded as a client would send them (a NUL, a newline, a right-to-left override, dots, a huge one).
  const BAD = ['Upper', 'a%00b', 'a%0Ab', '%E2%80%AE', '%2e%2e', 'a--b', 'x'.repeat(3000), '-x', 'a%20b'];
  // Bodies that fit no route: every route with a JSON body must refuse each.
  const BAD_BODIES: Array<[string, { raw: string | Buffer; type?: string }]> = [
    ['invalid JSON', { raw: '{"name": "x",' }],
    ['an array', { raw: '[1,2]' }],
    ['a string', { raw: '"name"' }],
    ['an unknown field', { raw: '{"zz_unknown": 1}' }],
    ['a 2 MiB body', { raw: JSON.stringify({ name: 'x'.repeat(2 * 1024 * 1024) }) }],
    ['text/plain', { raw: 'name=x', type: 'text/plain' }],
    ['a NUL byte in raw JSON', { raw: Buffer.from('{"name":"a\u0000b"}') }],
  ];

  it('answers bad names in every route parameter with a 4xx and a ZOMG_ code', async () => {
    for (const [method, template] of ROUTES) {
      for (const param of template.match(/\{(\w)\}/g) ?? []) {
        const key = param.slice(1, 2);
        for (const bad of BAD) {
          const path = template.replace(/\{(\w)\}/g, (_m, k: string) => (k === key ? bad : (VALID[k] as string)));
          const a = await hit(method, path, method === 'POST' || method === 'PUT' ? { json: {} } : {});
          expect4xx(`${method} ${path.slice(0, 120)}`, a);
        }
      }
    }
    expect4xx('GET boxes of project "-x"', await hit('GET', '/v1/projects/-x/boxes'), 'ZOMG_INVALID_NAME');
  });

  it('answers malformed bodies and query strings on every route with a 4xx and a ZOMG_ code', async () => {
    for (const [method, template] of ROUTES) {
      if (method !== 'POST' && method !== 'PUT') continue;
      const path = template.replace(/\{(\w)\}/g, (_m, k: string) => VALID[k] as string);
      for (const [what, body] of BAD_BODIES) expect4xx(`${method} ${path} with ${what}`, await hit(method, path, body));
    }
    const queries = ['max_results=-1', 'max_results=abc', 'max_results=99999', 'page_token=garbage', 'zz_unknown=1', 'tag=Bad%00', `prefix=${'p'.repeat(5000)}&page_token=x`];
    for (const list of ['/v1/projects/demo/boxes', '/v1/projects/demo/boxes/web/checkpoints', '/v1/bases']) {
      for (const q of queries) {
        if (q.startsWith('tag') && list !== '/v1/projects/demo/boxes') continue;
        if (q.startsWith('prefix') && list !== '/v1/projects/demo/boxes') continue;
        expect4xx(`GET ${list}?${q.slice(0, 40)}`, await hit('GET', `${list}?${q}`));
      }
    }
    for (const q of ['', '?path=', '?path=relative', '?path=/etc%00/passwd', '?path=/etc/passwd&against=%00', '?path=/etc/passwd&zz=1', `?path=/${'d/'.repeat(3000)}`]) {
      expect4xx(`GET diff/file${q.slice(0, 40)}`, await hit('GET', `/v1/projects/demo/boxes/web/diff/file${q}`));
    }
    expect4xx('GET diff?against=%00', await hit('GET', '/v1/projects/demo/boxes/web/diff?against=%00'));
    expect4xx('exec with no command', await hit('POST', '/v1/projects/demo/boxes/web/exec', { json: {} }));
    expect4xx('exec with a number command', await hit('POST', '/v1/projects/demo/boxes/web/exec', { json: { command: 5 } }));
    expect4xx('exec with an empty argv', await hit('POST', '/v1/projects/demo/boxes/web/exec', { json: { command: [] } }));
    expect4xx('exec with env not a map of strings', await hit('POST', '/v1/projects/demo/boxes/web/exec', { json: { command: ['id'], env: { A: 1 } } }));
    expect4xx('unknown route', await hit('GET', '/v1/nope'), 'ZOMG_ROUTE_NOT_FOUND');
    expect4xx('a missing box', await hit('GET', '/v1/projects/demo/boxes/ghost'), 'ZOMG_BOX_NOT_FOUND');
    expect4xx('no token', await hit('GET', '/v1/bases', { headers: { authorization: '' } }), 'ZOMG_UNAUTHORIZED');
  });

  it('refuses NUL on every input surface with ZOMG_INVALID_INPUT, leaving nothing half-made', async () => {
    const NUL = '\u0000';
    const smuggle = `x${NUL}--ro-bind${NUL}/some/host/dir${NUL}/injected`;
    const cases: Array<[string, string, string, unknown]> = [
      ['create: environment value (a bwrap argument smuggle)', 'POST', '/v1/projects/demo/boxes', { name: 'smuggle', base: 'bb', environment: { A: smuggle } }],
      ['create: environment key', 'POST', '/v1/projects/demo/boxes', { name: 'smuggle', base: 'bb', environment: { [`A${NUL}B`]: 'x' } }],
      ['create: tag', 'POST', '/v1/projects/demo/boxes', { name: 'smuggle', base: 'bb', tags: { k: `v${NUL}` } }],
      ['create: box name', 'POST', '/v1/projects/demo/boxes', { name: `smug${NUL}gle`, base: 'bb' }],
      ['create: base name', 'POST', '/v1/projects/demo/boxes', { name: 'smuggle', base: `bb${NUL}` }],
      ['create: fork', 'POST', '/v1/projects/demo/boxes', { name: 'smuggle', fork: `web${NUL}` }],
      ['update: environment', 'PUT', '/v1/projects/demo/boxes/web', { environment: { A: smuggle } }],
      ['update: tag', 'PUT', '/v1/projects/demo/boxes/web', { tags: { [`k${NUL}`]: 'v' } }],
      ['exec: argv', 'POST', '/v1/projects/demo/boxes/web/exec', { command: ['echo', `a${NUL}b`] }],
      ['exec: shell string', 'POST', '/v1/projects/demo/boxes/web/exec', { command: `echo a${NUL}b` }],
      ['exec: env', 'POST', '/v1/projects/demo/boxes/web/exec', { command: ['id'], env: { A: smuggle } }],
      ['exec: cwd', 'POST', '/v1/projects/demo/boxes/web/exec', { command: ['id'], cwd: `/tmp${NUL}/x` }],
      ['exec: user', 'POST', '/v1/projects/demo/boxes/web/exec', { command: ['id'], user: `root${NUL}` }],
      ['exec (background): argv', 'POST', '/v1/projects/demo/boxes/web/exec', { command: ['sleep', `1${NUL}`], background: true }],
      ['checkpoint: name', 'POST', '/v1/projects/demo/boxes/web/checkpoints', { name: `c${NUL}1` }],
      ['checkpoint: description', 'POST', '/v1/projects/demo/boxes/web/checkpoints', { description: `d${NUL}` }],
      ['save base: name', 'POST', '/v1/projects/demo/bases', { box: 'web', name: `saved${NUL}` }],
      ['save base: box', 'POST', '/v1/projects/demo/bases', { box: `web${NUL}`, name: 'saved' }],
    ];
    for (const [what, method, path, json] of cases) expect4xx(what, await hit(method, path, { json }), 'ZOMG_INVALID_INPUT');
    for (const [what, path] of [
      ['diff file: path', '/v1/projects/demo/boxes/web/diff/file?path=/etc%00/passwd'],
      ['base name in the path', '/v1/bases/bb%00'],
      ['box name in the path', '/v1/projects/demo/boxes/we%00b'],
      ['checkpoint name in the path', '/v1/projects/demo/boxes/web/checkpoints/v%000'],
    ] as const) {
      expect4xx(what, await hit('GET', path), 'ZOMG_INVALID_INPUT');
    }
    expect4xx('install: base name', await hit('POST', '/v1/bases/bb%00/install', { json: {} }), 'ZOMG_INVALID_INPUT');
    assert.equal((await hit('GET', '/v1/projects/demo/boxes/smuggle')).status, 404, 'a refused create left a box behind');
    assert.equal((await hit('GET', '/v1/bases/saved')).status, 404, 'a refused save left a base behind');
    assert.equal(((await hit('GET', '/v1/projects/demo/boxes/web/checkpoints')).body.checkpoints as unknown[]).length, 1);
    assert.deepEqual(failures, []);
  });

  it('checks the exec WebSocket: names before the upgrade, then every frame, never crashing', async () => {
    const wsPath = (name: string): string => `/v1/projects/default/boxes/${name}/exec/ws`;
    const first = JSON.stringify({ command: ['id'] });
    // The case that used to end the server: an invalid box name, then a valid request.
    expectWsError('an invalid box name', await ws(wsPath('Upper'), [first]), 'ZOMG_INVALID_NAME');
    expectWsError('a NUL in the box name', await ws(wsPath('a%00b'), [first]), 'ZOMG_INVALID_INPUT');
    expectWsError('a missing box', await ws(wsPath('ghost'), [first]), 'ZOMG_BOX_NOT_FOUND');
    expectWsError('no token', await ws('/v1/projects/demo/boxes/web/exec/ws', [first], {}), 'ZOMG_UNAUTHORIZED');
    const web = '/v1/projects/demo/boxes/web/exec/ws';
    expectWsError('a binary frame before the request', await ws(web, [Buffer.from([1, 2, 3]), first]), 'ZOMG_INVALID_ARGUMENT');
    expectWsError('a first frame that is not JSON', await ws(web, ['not json']), 'ZOMG_INVALID_JSON');
    expectWsError('a number for the command', await ws(web, [JSON.stringify({ command: 5 })]), 'ZOMG_INVALID_ARGUMENT');
    expectWsError('JSON null', await ws(web, ['null']), 'ZOMG_INVALID_ARGUMENT');
    expectWsError('an unknown field', await ws(web, [JSON.stringify({ command: ['id'], bogus: 1 })]), 'ZOMG_INVALID_ARGUMENT');
    expectWsError('a buffered-only field', await ws(web, [JSON.stringify({ command: ['id'], background: true })]), 'ZOMG_INVALID_ARGUMENT');
    expectWsError('a NUL in cwd', await ws(web, [JSON.stringify({ command: ['id'], cwd: '/tmp\u0000x' })]), 'ZOMG_INVALID_INPUT');
    expectWsError('a NUL in argv', await ws(web, [JSON.stringify({ command: ['id', '\u0000'] })]), 'ZOMG_INVALID_INPUT');
    expectWsError('a NUL in env', await ws(web, [JSON.stringify({ command: ['id'], env: { A: 'x\u0000y' } })]), 'ZOMG_INVALID_INPUT');
    const huge = await ws(web, [JSON.stringify({ command: ['id'], cwd: `/${'c'.repeat(6 * 1024 * 1024)}` })]);
    expectWsError('a 6 MiB cwd (never echoed back)', huge, 'ZOMG_INVALID_INPUT');
    expectWsError('a bogus text frame after the request', await ws(web, [JSON.stringify({ command: ['sleep', '5'] }), '{"type":"resize"}']), 'ZOMG_INVALID_ARGUMENT');
    // A frame over the limit is refused by the WebSocket layer (close 1009, or 1006 when the
    // connection drops while the client is still sending); the server lives on.
    const tooBig = await ws(web, [`{"command":["id"],"cwd":"${'x'.repeat(9 * 1024 * 1024)}"}`]);
    assert.ok(tooBig.closeCode === 1009 || tooBig.closeCode === 1006, String(tooBig.closeCode));
    assert.equal(tooBig.messages.length, 0);
    assert.ok(server?.alive());
    // And the protocol still works.
    const good = await ws(web, [JSON.stringify({ command: ['sh', '-c', 'cat; echo done'] }), Buffer.from('in '), '{"type":"stdin_end"}']);
    assert.deepEqual(good.messages, [{ type: 'exit', exit_code: 0 }]);
    assert.equal(good.output, 'in done\n');
    assert.deepEqual(failures, []);
  });

  it('caps buffered exec output at 1 MiB per stream, flags it, and lets the command finish', async () => {
    const a = await hit('POST', '/v1/projects/demo/boxes/web/exec', {
      json: { command: 'head -c 3145728 /dev/zero | tr "\\0" a; head -c 2000000 /dev/zero | tr "\\0" b >&2; echo end >&2; exit 7' },
    });
    assert.equal(a.status, 200, a.text.slice(0, 200));
    assert.equal(a.body.exit_code, 7);
    assert.equal((a.body.stdout as string).length, 1024 * 1024);
    assert.equal((a.body.stderr as string).length, 1024 * 1024);
    assert.equal(a.body.stdout_truncated, true);
    assert.equal(a.body.stderr_truncated, true);
    const small = await hit('POST', '/v1/projects/demo/boxes/web/exec', { json: { command: ['echo', 'hi'] } });
    assert.deepEqual(small.body, { exit_code: 0, stdout: 'hi\n', stderr: '', stdout_truncated: false, stderr_truncated: false });
  });

  it('answers every body over the limit with its 413, and cuts an upload that goes on and on', async () => {
    // Refused before it is read, the body's answer goes at once, and the rest of the upload is
    // read and dropped: closed with it unread, the connection was reset, and the client, still
    // sending, lost the answer (EPIPE in ~1 of 100 such requests over loopback).
    const big = { raw: JSON.stringify({ name: 'x'.repeat(2 * 1024 * 1024) }) };
    for (let i = 0; i < 300; i++) expect4xx(`a 2 MiB body, try ${i}`, await hit('POST', '/v1/projects/demo/boxes', big), 'ZOMG_TOO_LARGE');
    // 200 MiB: the answer comes while it is being sent, and past 64 MiB the connection is cut.
    const { hostname, port } = new URL(server?.url ?? '');
    const started = Date.now();
    const outcome = await new Promise<{ answer: string; sent: number; ended: string }>((resolve) => {
      const socket = connect(Number(port), hostname);
      let answer = '';
      let sent = 0;
      socket.on('data', (d: Buffer) => (answer += d.toString('latin1')));
      socket.on('error', (err: NodeJS.ErrnoException) => resolve({ answer, sent, ended: err.code ?? err.message }));
      socket.on('close', () => resolve({ answer, sent, ended: 'closed' }));
      socket.write(`POST /v1/projects/demo/boxes HTTP/1.1\r\nhost: ${hostname}:${port}\r\nauthorization: Bearer ${token}\r\ncontent-type: application/json\r\ncontent-length: ${200 * 1024 * 1024}\r\n\r\n`);
      const chunk = Buffer.alloc(1024 * 1024, 0x61);
      const pump = (): void => {
        while (sent < 200 * 1024 * 1024 && !socket.destroyed) {
          sent += chunk.length;
          if (!socket.write(chunk)) {
            socket.once('drain', pump);
            return;
          }
        }
      };
      pump();
    });
    assert.match(outcome.answer, /^HTTP\/1\.1 413 /, JSON.stringify({ ...outcome, answer: outcome.answer.slice(0, 200) }));
    assert.match(outcome.answer, /ZOMG_TOO_LARGE/);
    assert.ok(outcome.sent < 150 * 1024 * 1024, `cut after ${outcome.sent} bytes of 200 MiB (${outcome.ended})`);
    assert.ok(Date.now() - started < 30_000, 'cut within the bounds');
    // A request pipelined behind a refused body, on the connection its answer closes, is not served.
    const answers = await new Promise<string>((resolve) => {
      const socket = connect(Number(port), hostname);
      let got = '';
      socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
      socket.on('error', () => undefined);
      socket.on('close', () => resolve(got));
      const head = (method: string, path: string, body: string): string =>
        `${method} ${path} HTTP/1.1\r\nhost: ${hostname}:${port}\r\nauthorization: Bearer ${token}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
      socket.write(head('POST', '/v1/projects/demo/boxes', big.raw) + head('POST', '/v1/projects/demo/boxes', '{"name":"piped","base":"bb"}'));
    });
    assert.equal(answers.match(/^HTTP\/1\.1 /gm)?.length, 1, answers.slice(0, 300));
    assert.match(answers, /^HTTP\/1\.1 413 /);
    assert.equal((await hit('GET', '/v1/projects/demo/boxes/piped')).status, 404, 'the pipelined create did not run');
  });

  it('is still alive and serving after all of it, with zero 500s', async () => {
    assert.deepEqual(failures, []);
    assert.ok(server?.alive(), `zomg serve died: ${server?.stderr()}`);
    assert.equal((await hit('GET', '/v1/health')).status, 200);
    assert.equal((await hit('GET', '/v1/projects/demo/boxes/web')).body.status, 'running');
    assert.doesNotMatch(server?.stderr() ?? '', /uncaught exception|unhandled rejection/);
  });
});

describe('zomg serve --no-auth: Host and Origin must be the loopback address it listens on', { skip: !isRoot() && 'needs root for btrfs' }, () => {
  let pool: TestPool;
  let stateDir: string;
  let server: Served | undefined;
  let port = 0;

  before(async () => {
    pool = makeTestPool(512);
    stateDir = mkdtempSync(join(tmpdir(), 'zomg-noauth-'));
    const env: NodeJS.ProcessEnv = { ...process.env, ZOMG_HOME: stateDir, ZOMG_POOL_PATH: pool.mnt, ZOMG_NO_SIZE_WORKER: '1' };
    for (const k of ['ZOMG_PROJECT', 'ZOMG_URL', 'ZOMG_API_URL', 'ZOMG_PROFILE']) delete env[k];
    server = await startServe(env, ['--no-auth']);
    port = Number(new URL(server.url).port);
  });
  after(async () => {
    await server?.stop();
    pool?.cleanup();
    if (stateDir) rmSync(stateDir, { recursive: true, force: true });
  });

  /** A request with exactly these headers (fetch would not let us set Host). */
  const get = (path: string, headers: Record<string, string>): Promise<{ status: number; body: Record<string, unknown> }> =>
    new Promise((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port, path, headers, setHost: false }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }));
      });
      req.on('error', reject);
      req.end();
    });

  it('answers its own loopback names, with or without a matching Origin', async () => {
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`]) assert.equal((await get('/v1/bases', { host })).status, 200, host);
    assert.equal((await get('/v1/bases', { host: `127.0.0.1:${port}`, origin: `http://localhost:${port}` })).status, 200);
  });

  it('refuses another Host (DNS rebinding) and a foreign Origin with 403 ZOMG_FORBIDDEN_ORIGIN', async () => {
    const cases: Array<Record<string, string>> = [
      { host: `evil.example:${port}` },
      { host: `127.0.0.1:${port + 1}` },
      { host: `127.0.0.1:${port}`, origin: 'http://evil.example' },
      { host: `127.0.0.1:${port}`, origin: 'null' },
      { host: `127.0.0.1:${port}`, origin: `http://127.0.0.1.evil.example:${port}` },
    ];
    for (const headers of cases) {
      const res = await get('/v1/bases', headers);
      assert.equal(res.status, 403, JSON.stringify(headers));
      assert.equal(res.body.code, 'ZOMG_FORBIDDEN_ORIGIN');
    }
  });

  it('refuses a WebSocket upgrade from a foreign Origin before it opens', async () => {
    const status = await new Promise<number>((resolve) => {
      const socket = new WebSocket(`ws://127.0.0.1:${port}/v1/projects/demo/boxes/web/exec/ws`, { headers: { origin: 'http://evil.example' } });
      socket.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      socket.on('open', () => {
        socket.close();
        resolve(101);
      });
      socket.on('error', () => undefined);
    });
    assert.equal(status, 403);
    assert.ok(server?.alive());
  });
});
