/** The data-volume routes over a real engine (inject): shapes, status codes from the error table, no host paths. */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildServer } from '../../src/api/server.js';
import { type TestEngine, makeTestEngine } from '../helpers/engine.js';
import { busyboxRootfsTar } from '../helpers/fixtures.js';
import { isRoot } from '../helpers/pool.js';

const TOKEN = 'test-token-volumes-0123';
const auth = { authorization: `Bearer ${TOKEN}` };

describe('HTTP API: data volumes', { skip: !isRoot() && 'needs root for btrfs' }, () => {
  let t: TestEngine;
  let app: FastifyInstance;
  let scratch: string;
  const call = (method: 'GET' | 'POST' | 'DELETE', url: string, payload?: object) =>
    app.inject({ method, url, headers: auth, ...(payload !== undefined ? { payload } : {}) });

  before(async () => {
    t = await makeTestEngine();
    app = await buildServer({ service: t.engine, token: TOKEN });
    await t.engine.importBase('bb', busyboxRootfsTar());
    scratch = mkdtempSync(join(tmpdir(), 'zomg-api-backups-'));
  });
  after(async () => {
    await app?.close();
    await t?.cleanup();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  it('creates, lists, gets, clones and deletes volumes', async () => {
    const created = await call('POST', '/v1/projects/demo/volumes', { name: 'data' });
    assert.equal(created.statusCode, 201, created.body);
    for (const k of ['id', 'name', 'project', 'ownership', 'delete_with_owner', 'size_bytes', 'attached', 'created_at']) assert.ok(k in created.json(), k);
    assert.equal((await call('POST', '/v1/projects/demo/volumes', { name: 'data' })).statusCode, 409);
    assert.equal((await call('POST', '/v1/projects/demo/volumes', { name: 'Bad' })).json().code, 'ZOMG_INVALID_NAME');
    assert.equal((await call('POST', '/v1/projects/demo/volumes', { name: 'x', from_snapshot: 'v0' })).statusCode, 400);
    assert.equal((await call('POST', '/v1/projects/demo/volumes', { name: 'x', extra: 1 })).statusCode, 400);
    assert.equal((await call('POST', '/v1/projects/other/volumes', { name: 'copy', from: 'demo:data' })).json().source, 'demo:data');
    assert.deepEqual((await call('GET', '/v1/projects/-/volumes')).json().volumes.map((v: { name: string }) => v.name), ['data', 'copy']);
    assert.equal((await call('GET', '/v1/projects/demo/volumes/data')).json().name, 'data');
    const missing = await call('GET', '/v1/projects/demo/volumes/nope');
    assert.equal(missing.statusCode, 404);
    assert.equal(missing.json().code, 'ZOMG_VOLUME_NOT_FOUND');
    assert.equal((await call('DELETE', '/v1/projects/other/volumes/copy')).statusCode, 204);
  });

  it('creates boxes with data_mounts, attaches, detaches, and refuses deleting an attached volume', async () => {
    const box = await call('POST', '/v1/projects/demo/boxes', { name: 'web', base: 'bb', data_mounts: [{ name: 'data', path: '/srv/data', read_only: true }] });
    assert.equal(box.statusCode, 201, box.body);
    assert.deepEqual(box.json().data_mounts, [{ name: 'data', path: '/srv/data', read_only: true }]);
    const bad = await call('POST', '/v1/projects/demo/boxes', { name: 'bad', base: 'bb', data_mounts: [{ name: 'data', path: '/proc/x' }] });
    assert.equal(bad.statusCode, 400);
    assert.equal(bad.json().code, 'ZOMG_INVALID_DATA_MOUNT');
    const attached = await call('DELETE', '/v1/projects/demo/volumes/data');
    assert.equal(attached.statusCode, 409);
    assert.match(attached.json().message, /demo:web/);
    await call('POST', '/v1/projects/demo/volumes', { name: 'more' });
    const running = await call('POST', '/v1/projects/demo/boxes/web/data-mounts', { name: 'more', path: '/more' });
    assert.equal(running.statusCode, 409);
    assert.equal(running.json().code, 'ZOMG_BOX_RUNNING');
    await call('POST', '/v1/projects/demo/boxes/web/stop');
    const ok = await call('POST', '/v1/projects/demo/boxes/web/data-mounts', { name: 'more', path: '/more' });
    assert.equal(ok.statusCode, 200, ok.body);
    assert.equal(ok.json().data_mounts.length, 2);
    assert.equal((await call('DELETE', '/v1/projects/demo/boxes/web/data-mounts/more')).json().data_mounts.length, 1);
    const listed = (await call('GET', '/v1/projects/demo/boxes')).json().boxes[0];
    assert.deepEqual(listed.data_mounts, [{ name: 'data', path: '/srv/data', read_only: true }]);
  });

  it('snapshots, diffs, restores, backs up and restores a backup', async () => {
    const snap = await call('POST', '/v1/projects/demo/volumes/more/snapshots', { description: 'empty' });
    assert.equal(snap.statusCode, 201, snap.body);
    assert.equal(snap.json().name, 'v0');
    assert.equal((await call('GET', '/v1/projects/demo/volumes/more/snapshots')).json().snapshots.length, 1);
    assert.deepEqual((await call('GET', '/v1/projects/demo/volumes/more/diff')).json().changes, []);
    assert.equal((await call('GET', '/v1/projects/demo/volumes/more/diff?against=nope')).statusCode, 404);
    assert.equal((await call('POST', '/v1/projects/demo/volumes/more/snapshots/v0/restore')).json().name, 'v0');
    const target = join(scratch, 't');
    mkdirSync(target);
    const url = `file://${target}`;
    const b = await call('POST', '/v1/projects/demo/volumes/more/backups', { to: url });
    assert.equal(b.statusCode, 201, b.body);
    assert.equal(b.json().kind, 'full');
    assert.equal((await call('POST', '/v1/projects/demo/volumes/more/backups', { to: 'gs://x/y' })).statusCode, 400);
    const listed = await call('GET', `/v1/projects/demo/backups?from=${encodeURIComponent(url)}`);
    assert.deepEqual(listed.json().backups.map((x: { name: string }) => x.name), ['v0']);
    const restored = await call('POST', '/v1/projects/demo/backups/restore', { from: url, volume: 'more', to: 'more-back' });
    assert.equal(restored.statusCode, 201, restored.body);
    assert.equal(restored.json().name, 'more-back');
    const missing = await call('POST', '/v1/projects/demo/backups/restore', { from: `file://${scratch}/none`, volume: 'more', to: 'x' });
    assert.equal(missing.statusCode, 400);
    assert.ok(!missing.body.includes(t.pool.mnt), 'no pool path in errors');
    assert.equal((await call('DELETE', '/v1/projects/demo/volumes/more/snapshots/v0')).statusCode, 204);
  });
});
