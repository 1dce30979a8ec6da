import assert from 'node:assert/strict';
import { createReadStream, statSync } from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Kind } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { buildServer, registeredRoutes } from '../../src/api/server.js';
import { RemoteClient } from '../../src/cli/remote.js';
import { parseBoxName, parseProjectName } from '../../src/core/names.js';
import { parseVolumeName } from '../../src/core/volumes.js';
import { type TestEngine, makeTestEngine } from '../helpers/engine.js';
import { busyboxRootfsTar } from '../helpers/fixtures.js';
import { isRoot } from '../helpers/pool.js';

const TOKEN = 'schema-token-0123456789';
const auth = { authorization: `Bearer ${TOKEN}` };
const ref = { project: parseProjectName('demo'), name: parseBoxName('web') };

type Json = Record<string, unknown>;

/** Every `$ref` in the document, wherever it sits. */
function refsIn(node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) for (const n of node) refsIn(n, out);
  else if (node && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) {
      if (k === '$ref' && typeof v === 'string') out.push(v);
      else refsIn(v, out);
    }
  }
  return out;
}

describe('one schema per route: the OpenAPI document and what the serializer keeps', { skip: !isRoot() && 'needs root for btrfs' }, () => {
  let t: TestEngine;
  let app: FastifyInstance;

  before(async () => {
    t = await makeTestEngine();
    // A page size of 2, so paging shows with a handful of items.
    app = await buildServer({ service: t.engine, token: TOKEN, pageSize: 2 });
    const tar = busyboxRootfsTar();
    const res = await app.inject({
      method: 'POST',
      url: '/v1/bases/bb/versions',
      headers: { ...auth, 'content-type': 'application/octet-stream', 'content-length': String(statSync(tar).size) },
      payload: createReadStream(tar),
    });
    assert.equal(res.statusCode, 201, res.body);
  });
  let scratch: string | undefined;
  after(async () => {
    await app?.close();
    await t?.cleanup();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  it('gives every route one TypeBox schema: operationId, summary, tags, and a response schema for each status it answers', () => {
    const routes = registeredRoutes(app);
    for (const route of routes) {
      const where = `${route.method} ${route.url}`;
      const schema = route.schema;
      assert.ok(schema, `${where}: no schema`);
      assert.ok(typeof schema.operationId === 'string' && schema.operationId.length > 0, `${where}: no operationId`);
      assert.ok(typeof schema.summary === 'string' && schema.summary.length > 0, `${where}: no summary`);
      assert.ok(Array.isArray(schema.tags) && schema.tags.length > 0, `${where}: no tags`);
      // Plain JSON Schema parts would be validated and typed apart from their TypeBox twins: none is left.
      for (const part of ['params', 'querystring', 'body', 'headers']) {
        if (schema[part] !== undefined) assert.ok(Kind in (schema[part] as object), `${where}: ${part} is not a TypeBox schema`);
      }
      const response = schema.response as Record<string, object> | undefined;
      assert.ok(response, `${where}: no response schemas`);
      const statuses = Object.keys(response);
      assert.ok(statuses.some((s) => /^(2\d\d|101)$/.test(s)), `${where}: no success response schema (${statuses.join(',')})`);
      for (const [status, s] of Object.entries(response)) assert.ok(Kind in s, `${where} ${status}: not a TypeBox schema`);
      const params = [...route.url.matchAll(/:(\w+)/g)].map((m) => m[1] as string);
      if (params.length > 0) {
        const declared = Object.keys((schema.params as { properties?: object } | undefined)?.properties ?? {});
        assert.deepEqual(declared.sort(), [...params].sort(), `${where}: path parameters and the params schema differ`);
      }
    }
  });

  it('describes every registered route: operationId, summary, tags, its success and error responses, shared components', async () => {
    const res = await app.inject({ method: 'GET', url: '/v1/openapi.json' });
    assert.equal(res.statusCode, 200);
    const doc = res.json() as { openapi: string; paths: Record<string, Record<string, Json>>; components: { schemas: Record<string, Json> } };
    assert.match(doc.openapi, /^3\.1\./);
    const routes = registeredRoutes(app);
    assert.ok(routes.length >= 26, `only ${routes.length} routes`);
    const ids = new Set<string>();
    for (const route of routes) {
      const path = route.url.replace(/:(\w+)/g, '{$1}');
      const op = doc.paths[path]?.[route.method.toLowerCase()];
      assert.ok(op, `${route.method} ${path} is missing from the document`);
      const where = `${route.method} ${path}`;
      assert.equal(typeof op.operationId, 'string', `${where}: no operationId`);
      assert.ok(!ids.has(op.operationId as string), `${where}: duplicate operationId ${String(op.operationId)}`);
      ids.add(op.operationId as string);
      assert.ok(typeof op.summary === 'string' && op.summary.length > 0, `${where}: no summary`);
      assert.ok(Array.isArray(op.tags) && op.tags.length > 0, `${where}: no tags`);
      const responses = op.responses as Record<string, Json>;
      const statuses = Object.keys(responses);
      assert.ok(statuses.some((s) => /^(2\d\d|101)$/.test(s)), `${where}: no success response (${statuses.join(',')})`);
      for (const s of statuses) assert.notEqual((responses[s] as Json).description, 'Default Response', `${where} ${s}: undescribed`);
      if (path !== '/v1/health' && path !== '/v1/openapi.json') {
        for (const s of ['400', '401', '500']) {
          const schema = JSON.stringify(responses[s] ?? {});
          assert.match(schema, /#\/components\/schemas\/Error/, `${where}: ${s} is not the Error shape`);
        }
      }
      if (route.websocket) {
        assert.equal(op['x-websocket'], true, `${where}: a WebSocket route not marked x-websocket`);
        assert.match(String(op.description), /stdin_end|resize/, `${where}: a WebSocket route must describe its protocol`);
      }
    }
    for (const name of ['Error', 'Box', 'BaseVersion', 'BaseSummary', 'BaseDetails', 'Checkpoint', 'DiffStatus', 'FileDiff', 'LifecycleResult', 'InstallOutcome', 'ExecResult', 'BoxList']) {
      assert.ok(doc.components.schemas[name], `component ${name} is missing`);
    }
    for (const r of refsIn(doc)) {
      const m = /^#\/components\/schemas\/(.+)$/.exec(r);
      assert.ok(m && doc.components.schemas[m[1] as string], `dangling $ref ${r}`);
    }
    const created = doc.paths['/v1/projects/{project}/boxes']?.post?.responses as Record<string, unknown>;
    assert.ok(created['201'] && created['409'], 'createBox answers 201 and 409');
    const deleted = doc.paths['/v1/projects/{project}/boxes/{name}']?.delete?.responses as Record<string, unknown>;
    assert.ok(deleted['204'], 'deleteBox answers 204');
  });

  it('describes the NDJSON form of both status diffs (a box root, a volume)', async () => {
    const doc = (await app.inject({ method: 'GET', url: '/v1/openapi.json' })).json() as { paths: Record<string, Record<string, Json>> };
    for (const [path, head] of [
      ['/v1/projects/{project}/boxes/{name}/diff', '{box, project, against, to, method}'],
      ['/v1/projects/{project}/volumes/{volume}/diff', '{volume, project, against, to, method}'],
    ] as const) {
      const op = doc.paths[path]?.get as Json;
      assert.ok(op, path);
      assert.match(String(op.description), /Accept: application\/x-ndjson/, path);
      assert.ok(String(op.description).includes(head), `${path}: names its first line ${head}`);
      assert.match(String(op.description), /\{"error": \{statusCode, code, error, message, hint\?\}\}/, `${path}: the error-after-the-first-line contract`);
      const ok = (op.responses as Record<string, Json>)['200'] as { content: Record<string, unknown> };
      assert.deepEqual(Object.keys(ok.content).sort(), ['application/json', 'application/x-ndjson'], path);
    }
  });

  it('keeps every field of Box, BaseVersion, Snapshot, DiffStatus and FileDiff through the response schemas', async () => {
    const created = await app.inject({ method: 'POST', url: '/v1/projects/demo/boxes', headers: auth, payload: { name: 'web', base: 'bb', tags: { team: 'a' }, environment: { FOO: 'bar' } } });
    assert.equal(created.statusCode, 201, created.body);
    assert.deepEqual(created.json(), await t.engine.getBox(ref));
    assert.deepEqual((await app.inject({ method: 'GET', url: '/v1/projects/demo/boxes/web', headers: auth })).json(), await t.engine.getBox(ref));

    const base = (await app.inject({ method: 'GET', url: '/v1/bases/bb', headers: auth })).json() as { versions: Json[] };
    assert.deepEqual(base, await t.engine.inspectBase('bb'));
    for (const field of ['name', 'alias', 'created_at', 'size_bytes', 'provenance', 'config']) assert.ok(field in (base.versions[0] ?? {}), field);

    const cp = await app.inject({ method: 'POST', url: '/v1/projects/demo/boxes/web/checkpoints', headers: auth, payload: { description: 'first' } });
    assert.equal(cp.statusCode, 201, cp.body);
    assert.deepEqual(cp.json(), await t.engine.getSnapshot(ref, 'v0'));

    const exec = await app.inject({
      method: 'POST',
      url: '/v1/projects/demo/boxes/web/exec',
      headers: auth,
      payload: { command: 'echo changed > /etc/motd; echo new > /new.txt; ln -s /etc/motd /link; rm -f /etc/hostname' },
    });
    assert.equal(exec.json().exit_code, 0, exec.body);
    const diff = (await app.inject({ method: 'GET', url: '/v1/projects/demo/boxes/web/diff', headers: auth })).json();
    assert.deepEqual(diff, await t.engine.diffStatus(ref));
    assert.ok(diff.changes.length >= 3, JSON.stringify(diff));
    const file = (await app.inject({ method: 'GET', url: '/v1/projects/demo/boxes/web/diff/file?path=/etc/motd', headers: auth })).json();
    assert.deepEqual(file, await t.engine.diffFile(ref, '/etc/motd'));
    assert.notEqual(file.status, 'unchanged');
    const link = (await app.inject({ method: 'GET', url: '/v1/projects/demo/boxes/web/diff/file?path=/link', headers: auth })).json();
    assert.equal(link.current?.target, '/etc/motd');
    assert.deepEqual(link, await t.engine.diffFile(ref, '/link'));
  });

  it('pages listings with max_results and next_page_token, and the remote client follows them to the end', async () => {
    for (let i = 1; i < 5; i++) {
      assert.equal((await app.inject({ method: 'POST', url: '/v1/projects/demo/boxes/web/checkpoints', headers: auth, payload: {} })).statusCode, 201);
    }
    const all = (await t.engine.listSnapshots(ref)).map((c) => c.name);
    assert.equal(all.length, 5);
    const seen: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const res = await app.inject({ method: 'GET', url: `/v1/projects/demo/boxes/web/checkpoints${token ? `?page_token=${encodeURIComponent(token)}` : ''}`, headers: auth });
      assert.equal(res.statusCode, 200, res.body);
      const body = res.json();
      assert.ok(body.checkpoints.length <= 2);
      seen.push(...body.checkpoints.map((c: { name: string }) => c.name));
      token = body.next_page_token;
      pages++;
    } while (token !== undefined);
    assert.deepEqual(seen, all);
    assert.equal(pages, 3);
    const bad = await app.inject({ method: 'GET', url: '/v1/projects/demo/boxes/web/checkpoints?page_token=nonsense', headers: auth });
    assert.equal(bad.statusCode, 400);
    assert.equal(bad.json().code, 'ZOMG_INVALID_PAGE_TOKEN');

    await app.listen({ host: '127.0.0.1', port: 0 });
    const address = app.server.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    const client = new RemoteClient(`http://127.0.0.1:${port}`, TOKEN);
    assert.deepEqual((await client.listSnapshots(ref)).map((c) => c.name), all);
    assert.deepEqual((await client.listSnapshots(ref, { maxResults: 3 })).map((c) => c.name), all.slice(0, 3));
    assert.deepEqual(await client.listBoxes({ project: 'demo' }), await t.engine.listBoxes({ project: 'demo' }));
    assert.deepEqual(await client.listBases(), await t.engine.listBases());
  });

  it('keeps every field of Volume, VolumeSnapshot, VolumeDiffStatus, VolumeBackup and BoxProcess, and the remote client reads them as the engine returns them', async () => {
    const vol = { project: parseProjectName('demo'), name: parseVolumeName('data') };
    const created = await app.inject({ method: 'POST', url: '/v1/projects/demo/volumes', headers: auth, payload: { name: 'data' } });
    assert.equal(created.statusCode, 201, created.body);
    assert.deepEqual(created.json(), await t.engine.getVolume(vol));
    const snap = await app.inject({ method: 'POST', url: '/v1/projects/demo/volumes/data/snapshots', headers: auth, payload: { description: 'empty' } });
    assert.equal(snap.statusCode, 201, snap.body);
    assert.deepEqual([snap.json()], await t.engine.listVolumeSnapshots(vol));
    const diff = await app.inject({ method: 'GET', url: '/v1/projects/demo/volumes/data/diff', headers: auth });
    assert.equal(diff.statusCode, 200, diff.body);
    assert.deepEqual(diff.json(), await t.engine.volumeDiffStatus(vol));
    scratch = mkdtempSync(join(tmpdir(), 'zomg-schema-backups-'));
    const backup = await app.inject({ method: 'POST', url: '/v1/projects/demo/volumes/data/backups', headers: auth, payload: { to: `file://${scratch}` } });
    assert.equal(backup.statusCode, 201, backup.body);
    assert.deepEqual([backup.json()], await t.engine.listBackups(`file://${scratch}`));
    for (const field of ['kind', 'parent', 'sha256', 'stream_bytes', 'volume_size_bytes']) assert.ok(field in backup.json(), field);

    const address = app.server.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    const client = new RemoteClient(`http://127.0.0.1:${port}`, TOKEN);
    assert.deepEqual(await client.listVolumes({ project: 'demo' }), await t.engine.listVolumes({ project: 'demo' }));
    assert.deepEqual(await client.listVolumeSnapshots(vol), await t.engine.listVolumeSnapshots(vol));
    assert.deepEqual(await client.listBackups(`file://${scratch}`), await t.engine.listBackups(`file://${scratch}`));
    const processes = await client.listProcesses(ref);
    assert.ok(processes.length > 0, 'a running box has processes');
    for (const p of processes) assert.deepEqual(Object.keys(p).sort(), ['command', 'cpu_seconds', 'pid', 'ppid', 'user']);
    assert.deepEqual(
      processes.map((p) => p.pid),
      (await t.engine.listProcesses(ref)).map((p) => p.pid),
    );
  });
  it('drives a box through its life with a client that knows only the document: calls built from operationIds, answers checked against the documented schemas', async () => {
    const doc = (await app.inject({ method: 'GET', url: '/v1/openapi.json' })).json() as {
      paths: Record<string, Record<string, Json>>;
      components: { schemas: Record<string, Json> };
    };
    const operations = new Map<string, { method: string; path: string; op: Json }>();
    for (const [path, methods] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(methods)) operations.set(op.operationId as string, { method: method.toUpperCase(), path, op });
    }
    /** What a generated client checks of an answer: a documented status, and a JSON body of the documented shape. */
    const conforms = (schema: Json | undefined, value: unknown, where: string): void => {
      if (schema === undefined) return;
      if (typeof schema.$ref === 'string') {
        const name = schema.$ref.replace('#/components/schemas/', '');
        const target = doc.components.schemas[name];
        assert.ok(target, `${where}: dangling ${schema.$ref}`);
        conforms(target, value, `${where} (${name})`);
        return;
      }
      for (const alt of ['anyOf', 'oneOf'] as const) {
        const alts = schema[alt] as Json[] | undefined;
        if (alts === undefined) continue;
        const ok = alts.some((a) => {
          try {
            conforms(a, value, where);
            return true;
          } catch {
            return false;
          }
        });
        assert.ok(ok, `${where}: matches none of ${alt}`);
        return;
      }
      const type = schema.type as string | string[] | undefined;
      const types = type === undefined ? [] : Array.isArray(type) ? type : [type];
      const actual = value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value === 'number' && Number.isInteger(value) ? 'integer' : typeof value;
      if (types.length > 0) assert.ok(types.includes(actual) || (actual === 'integer' && types.includes('number')), `${where}: ${actual} where the document says ${types.join('|')}`);
      if (Array.isArray(schema.enum)) assert.ok((schema.enum as unknown[]).includes(value), `${where}: ${String(value)} is not one of the documented values`);
      if (actual === 'array' && schema.items) (value as unknown[]).forEach((v, i) => conforms(schema.items as Json, v, `${where}[${i}]`));
      if (actual === 'object') {
        const obj = value as Json;
        const props = (schema.properties ?? {}) as Record<string, Json>;
        for (const k of (schema.required ?? []) as string[]) assert.ok(k in obj, `${where}: required ${k} is missing`);
        for (const [k, v] of Object.entries(obj)) {
          if (props[k]) conforms(props[k], v, `${where}.${k}`);
          else if (schema.additionalProperties === false) assert.fail(`${where}: ${k} is not in the document`);
          else if (typeof schema.additionalProperties === 'object') conforms(schema.additionalProperties as Json, v, `${where}.${k}`);
        }
      }
    };
    const call = async (operationId: string, params: Record<string, string>, body?: Json): Promise<{ status: number; json: unknown }> => {
      const found = operations.get(operationId);
      assert.ok(found, `the document has no operation ${operationId}`);
      const url = found.path.replace(/\{(\w+)\}/g, (_, name: string) => {
        assert.ok(name in params, `${operationId}: no value for {${name}}`);
        return encodeURIComponent(params[name] as string);
      });
      const res = await app.inject({
        method: found.method as 'GET',
        url,
        headers: { ...auth, ...(body ? { 'content-type': 'application/json' } : {}) },
        ...(body ? { payload: JSON.stringify(body) } : {}),
      });
      const responses = found.op.responses as Record<string, Json>;
      const documented = responses[String(res.statusCode)];
      assert.ok(documented, `${operationId} answered ${res.statusCode}, which the document does not list (${Object.keys(responses).join(',')}): ${res.body}`);
      const json = res.body === '' ? undefined : (JSON.parse(res.body) as unknown);
      const content = documented.content as Record<string, { schema?: Json }> | undefined;
      if (json !== undefined) conforms(content?.['application/json']?.schema, json, `${operationId} ${res.statusCode}`);
      return { status: res.statusCode, json };
    };

    const p = { project: 'docclient' };
    const box = { ...p, name: 'life' };
    assert.equal((await call('createBox', p, { name: 'life', base: 'bb' })).status, 201);
    assert.equal(((await call('getBox', box)).json as Json).name, 'life');
    assert.equal((await call('createCheckpoint', box, { name: 'before' })).status, 201);
    const ran = await call('execBox', box, { command: ['sh', '-c', 'echo changed > /root/note'] });
    assert.equal((ran.json as Json).exit_code, 0);
    const diff = (await call('diffStatus', box)).json as Json;
    assert.ok(JSON.stringify(diff).includes('/root/note'), JSON.stringify(diff));
    const listed = (await call('listCheckpoints', box)).json as Json;
    assert.deepEqual((listed.checkpoints as Json[]).map((c) => c.name), ['before']);
    assert.equal((await call('stopBox', box)).status, 200);
    assert.equal((await call('restoreCheckpoint', { ...box, checkpoint: 'before' })).status, 200);
    assert.equal((await call('getBox', { ...p, name: 'nope' })).status, 404);
    assert.equal((await call('deleteCheckpoint', { ...box, checkpoint: 'before' })).status, 204);
    assert.equal((await call('deleteBox', box)).status, 204);
    assert.equal((await call('listBoxes', p)).status, 200);
  });
});
