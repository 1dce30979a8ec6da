import assert from 'node:assert/strict';
import { createReadStream, statSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildServer } from '../../src/api/server.js';
import { type TestEngine, makeTestEngine } from '../helpers/engine.js';
import { busyboxRootfsTar } from '../helpers/fixtures.js';
import { isRoot } from '../helpers/pool.js';

const TOKEN = 'test-token-0123456789';
const auth = { authorization: `Bearer ${TOKEN}` };

describe('HTTP API over a real engine', { skip: !isRoot() && 'needs root for btrfs' }, () => {
  let t: TestEngine;
  let app: FastifyInstance;

  before(async () => {
    t = await makeTestEngine();
    app = await buildServer({ service: t.engine, token: TOKEN });
  });
  after(async () => {
    await app?.close();
    await t?.cleanup();
  });

  it('serves health without a token, and refuses everything else without the right one', async () => {
    assert.equal((await app.inject({ method: 'GET', url: '/v1/health' })).json().status, 'ok');
    const none = await app.inject({ method: 'GET', url: '/v1/bases' });
    assert.equal(none.statusCode, 401);
    assert.equal(none.json().code, 'ZOMG_UNAUTHORIZED');
    const wrong = await app.inject({ method: 'GET', url: '/v1/bases', headers: { authorization: 'Bearer nope' } });
    assert.equal(wrong.statusCode, 401);
    assert.deepEqual(Object.keys(wrong.json()).sort(), ['code', 'error', 'hint', 'message', 'statusCode']);
  });

  it('serves an OpenAPI document listing the routes', async () => {
    const doc = (await app.inject({ method: 'GET', url: '/v1/openapi.json' })).json();
    assert.equal(doc.openapi.slice(0, 2), '3.');
    for (const path of ['/v1/bases', '/v1/projects/{project}/boxes', '/v1/projects/{project}/boxes/{name}/checkpoints/{checkpoint}/restore', '/v1/bases/{name}/versions']) {
      assert.ok(doc.paths[path], path);
    }
  });

  it('imports a streamed tarball, then lists and inspects it', async () => {
    const tar = busyboxRootfsTar();
    const res = await app.inject({
      method: 'POST',
      url: '/v1/bases/bb/versions',
      headers: { ...auth, 'content-type': 'application/octet-stream', 'content-length': String(statSync(tar).size) },
      payload: createReadStream(tar),
    });
    assert.equal(res.statusCode, 201, res.body);
    assert.equal(res.json().name, 'bb');
    assert.equal(res.json().provenance.kind, 'import');
    const list = (await app.inject({ method: 'GET', url: '/v1/bases', headers: auth })).json();
    assert.equal(list.bases[0].latest_version, 'bb');
    const details = (await app.inject({ method: 'GET', url: '/v1/bases/bb', headers: auth })).json();
    assert.equal(details.latest_version, 'bb');
    assert.equal(details.versions.length, 1);
  });

  it('refuses a body that is not a tarball with a clear 422', async () => {
    const res = await app.inject({ method: 'POST', url: '/v1/bases/junk/versions', headers: { ...auth, 'content-type': 'application/octet-stream' }, payload: Buffer.from('this is not a tar archive at all'.repeat(40)) });
    assert.equal(res.statusCode, 422, res.body);
    assert.equal(res.json().code, 'ZOMG_INVALID_ARCHIVE');
    assert.equal((await app.inject({ method: 'GET', url: '/v1/bases/junk', headers: auth })).statusCode, 404);
  });

  it('creates, gets, updates, lists and deletes boxes', async () => {
    const created = await app.inject({ method: 'POST', url: '/v1/projects/demo/boxes', headers: auth, payload: { name: 'web', base: 'bb', tags: { env: 'dev' }, environment: { FOO: 'bar' } } });
    assert.equal(created.statusCode, 201, created.body);
    const box = created.json();
    for (const field of ['id', 'name', 'project', 'status', 'base', 'tags', 'environment', 'data_mounts', 'created_at', 'updated_at']) assert.ok(field in box, field);
    assert.equal(box.base, 'bb');
    assert.equal((await app.inject({ method: 'GET', url: '/v1/projects/demo/boxes/web', headers: auth })).json().tags.env, 'dev');
    const upd = await app.inject({ method: 'PUT', url: '/v1/projects/demo/boxes/web', headers: auth, payload: { tags: { env: 'prod' } } });
    assert.equal(upd.json().tags.env, 'prod');
    assert.equal((await app.inject({ method: 'GET', url: '/v1/projects/-/boxes', headers: auth })).json().boxes.length, 1);
    assert.equal((await app.inject({ method: 'GET', url: '/v1/projects/demo/boxes?tag=env=prod', headers: auth })).json().boxes.length, 1);
    assert.equal((await app.inject({ method: 'GET', url: '/v1/projects/demo/boxes?tag=env=dev', headers: auth })).json().boxes.length, 0);
    const dup = await app.inject({ method: 'POST', url: '/v1/projects/demo/boxes', headers: auth, payload: { name: 'web', base: 'bb' } });
    assert.equal(dup.statusCode, 409);
    assert.equal(dup.json().code, 'ZOMG_BOX_EXISTS');
  });

  it('drives checkpoints: create, list, get, restore, delete', async () => {
    const base = '/v1/projects/demo/boxes/web/checkpoints';
    const c0 = await app.inject({ method: 'POST', url: base, headers: auth, payload: {} });
    assert.equal(c0.statusCode, 201, c0.body);
    assert.equal(c0.json().name, 'v0');
    const c1 = await app.inject({ method: 'POST', url: base, headers: auth, payload: { name: 'named', description: 'd' } });
    assert.equal(c1.json().name, 'named');
    assert.equal((await app.inject({ method: 'POST', url: base, headers: auth, payload: { name: 'named' } })).statusCode, 409);
    const parallel = await Promise.all(Array.from({ length: 5 }, () => app.inject({ method: 'POST', url: base, headers: auth, payload: {} })));
    assert.deepEqual(parallel.map((r) => r.statusCode), [201, 201, 201, 201, 201]);
    assert.equal(new Set(parallel.map((r) => r.json().name)).size, 5);
    const list = (await app.inject({ method: 'GET', url: base, headers: auth })).json().checkpoints;
    assert.equal(list.length, 7);
    assert.ok('size_bytes' in list[0]);
    assert.equal((await app.inject({ method: 'GET', url: `${base}/named`, headers: auth })).json().description, 'd');
    assert.equal((await app.inject({ method: 'POST', url: `${base}/v0/restore`, headers: auth })).statusCode, 200);
    assert.equal((await app.inject({ method: 'DELETE', url: `${base}/named`, headers: auth })).statusCode, 204);
    assert.equal((await app.inject({ method: 'GET', url: `${base}/named`, headers: auth })).statusCode, 404);
    assert.equal((await app.inject({ method: 'POST', url: `${base}/Bad--name/restore`, headers: auth })).json().code, 'ZOMG_INVALID_NAME');
  });

  it('answers bad input with stable codes: malformed JSON 400, oversized 413, bad names 400, unknown 404', async () => {
    const malformed = await app.inject({ method: 'POST', url: '/v1/projects/demo/boxes', headers: { ...auth, 'content-type': 'application/json' }, payload: '{"name": "x",' });
    assert.equal(malformed.statusCode, 400);
    assert.equal(malformed.json().code, 'ZOMG_INVALID_JSON');
    const big = await app.inject({ method: 'POST', url: '/v1/projects/demo/boxes', headers: { ...auth, 'content-type': 'application/json' }, payload: JSON.stringify({ name: 'x', tags: { k: 'v'.repeat(2 * 1024 * 1024) } }) });
    assert.equal(big.statusCode, 413);
    assert.equal(big.json().code, 'ZOMG_TOO_LARGE');
    const badName = await app.inject({ method: 'POST', url: '/v1/projects/demo/boxes', headers: auth, payload: { name: 'Bad_Name' } });
    assert.equal(badName.statusCode, 400);
    assert.equal(badName.json().code, 'ZOMG_INVALID_NAME');
    const extra = await app.inject({ method: 'POST', url: '/v1/projects/demo/boxes', headers: auth, payload: { name: 'ok', bogus: 1 } });
    assert.equal(extra.statusCode, 400);
    assert.equal((await app.inject({ method: 'GET', url: '/v1/projects/demo/boxes/missing', headers: auth })).json().code, 'ZOMG_BOX_NOT_FOUND');
    assert.equal((await app.inject({ method: 'POST', url: '/v1/projects/demo/boxes', headers: auth, payload: { name: 'both', base: 'bb', fork: 'web' } })).json().code, 'ZOMG_INVALID_ARGUMENT');
    assert.equal((await app.inject({ method: 'DELETE', url: '/v1/bases/bb/versions/bb', headers: auth })).statusCode, 409);
  });

  it('runs commands buffered: argv, a shell string, stdin, background', async () => {
    await app.inject({ method: 'POST', url: '/v1/projects/demo/boxes', headers: auth, payload: { name: 'runner', base: 'bb' } });
    const url = '/v1/projects/demo/boxes/runner/exec';
    const argv = await app.inject({ method: 'POST', url, headers: auth, payload: { command: ['sh', '-c', 'cat; echo e >&2; exit 3'], stdin: 'in' } });
    assert.deepEqual(argv.json(), { exit_code: 3, stdout: 'in', stderr: 'e\n', stdout_truncated: false, stderr_truncated: false });
    const shell = await app.inject({ method: 'POST', url, headers: auth, payload: { command: 'echo $BOX_NAME $((2+3))' } });
    assert.deepEqual(shell.json(), { exit_code: 0, stdout: 'runner 5\n', stderr: '', stdout_truncated: false, stderr_truncated: false });
    const bg = await app.inject({ method: 'POST', url, headers: auth, payload: { command: ['sleep', '1'], background: true } });
    assert.match(bg.json().log_path, /^\/tmp\/boxes\/exec\/\d+\.log$/);
    assert.equal((await app.inject({ method: 'POST', url: '/v1/projects/demo/boxes/runner/stop', headers: auth })).json().changed, true);
    const stopped = await app.inject({ method: 'POST', url, headers: auth, payload: { command: ['true'] } });
    assert.equal(stopped.statusCode, 409);
    assert.equal(stopped.json().code, 'ZOMG_BOX_STOPPED');
    assert.equal((await app.inject({ method: 'POST', url: '/v1/projects/demo/boxes/runner/resume', headers: auth })).json().box.status, 'running');
    assert.equal((await app.inject({ method: 'DELETE', url: '/v1/projects/demo/boxes/runner', headers: auth })).statusCode, 204);
  });

  it('deletes boxes and base aliases', async () => {
    assert.equal((await app.inject({ method: 'DELETE', url: '/v1/projects/demo/boxes/web', headers: auth })).statusCode, 204);
    assert.equal((await app.inject({ method: 'DELETE', url: '/v1/bases/bb', headers: auth })).statusCode, 204);
    assert.equal((await app.inject({ method: 'DELETE', url: '/v1/bases/bb/versions/bb', headers: auth })).statusCode, 204);
    assert.equal((await app.inject({ method: 'GET', url: '/v1/bases', headers: auth })).json().bases.length, 0);
  });
});
