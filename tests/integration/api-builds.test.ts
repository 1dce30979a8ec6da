/**
 * The build and save routes over a real engine: an uploaded context built server-side by
 * podman (zomg's store on the test pool), its output streamed back as NDJSON; errors as
 * statuses before the build starts and as a final event after.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildServer } from '../../src/api/server.js';
import { type TestEngine, makeTestEngine } from '../helpers/engine.js';
import { busyboxRootfsTar } from '../helpers/fixtures.js';
import { hasPodman, type TestStore, testStore } from '../helpers/podman.js';
import { isRoot } from '../helpers/pool.js';

const TOKEN = 'test-token-0123456789';
const auth = { authorization: `Bearer ${TOKEN}` };
const NDJSON = 'application/x-ndjson';

describe('HTTP API: base build and save', { skip: !isRoot() ? 'needs root for btrfs' : !hasPodman() ? 'podman is not installed' : false, concurrency: false }, () => {
  let t: TestEngine;
  let app: FastifyInstance;
  let store: TestStore;
  let work: string;

  /** The tar a remote CLI uploads: the context directory's content. */
  const contextTar = (name: string, files: Record<string, string>): Buffer => {
    const dir = join(work, name);
    mkdirSync(dir);
    execFileSync('cp', [busyboxRootfsTar(), join(dir, 'rootfs.tar')]);
    for (const [path, text] of Object.entries(files)) writeFileSync(join(dir, path), text);
    return execFileSync('tar', ['-c', '-f', '-', '-C', dir, '.'], { maxBuffer: 64 << 20 });
  };
  const events = (body: string): Array<Record<string, unknown>> =>
    body
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const build = (name: string, tar: Buffer, query = '', accept = NDJSON) =>
    app.inject({ method: 'POST', url: `/v1/bases/${name}/build${query}`, headers: { ...auth, 'content-type': 'application/x-tar', accept }, payload: tar });

  before(async () => {
    t = await makeTestEngine();
    store = testStore(t.pool.mnt);
    app = await buildServer({ service: t.engine, token: TOKEN });
    work = mkdtempSync(join(tmpdir(), 'zomg-api-builds-'));
  });
  after(async () => {
    await app?.close();
    try {
      store?.wipe();
    } finally {
      await t?.cleanup();
      if (work) rmSync(work, { recursive: true, force: true });
    }
  });

  it('builds an uploaded context, streaming the output; a detached Dockerfile stays out of the context', async () => {
    const dockerfile = 'FROM scratch\nADD rootfs.tar /\nCOPY . /ctx/\nRUN echo api-built > /built\nWORKDIR /ctx\n';
    const tar = contextTar('ok', { '.zomg-dockerfile-0123456789abcdef': dockerfile, 'hello.txt': 'hi\n' });
    const res = await build('apibase', tar, '?dockerfile=.zomg-dockerfile-0123456789abcdef&builder=podman');
    assert.equal(res.statusCode, 200, res.body);
    assert.match(res.headers['content-type'] as string, /application\/x-ndjson/);
    const evs = events(res.body);
    assert.ok(evs.some((e) => e.type === 'line' && String(e.line).includes('RUN echo api-built')), 'build lines are streamed');
    assert.ok(evs.some((e) => e.type === 'phase' && e.phase === 'build (podman)'));
    const last = evs.at(-1) as { type: string; version: { name: string; provenance: { kind: string; build: { builder: string; script: string } } } };
    assert.equal(last.type, 'result');
    assert.equal(last.version.name, 'apibase');
    assert.equal(last.version.provenance.kind, 'build');
    assert.equal(last.version.provenance.build.builder, 'podman');
    assert.equal(last.version.provenance.build.script, dockerfile);

    const created = await app.inject({ method: 'POST', url: '/v1/projects/default/boxes', headers: auth, payload: { name: 'apibox', base: 'apibase' } });
    assert.equal(created.statusCode, 201, created.body);
    const exec = await app.inject({ method: 'POST', url: '/v1/projects/default/boxes/apibox/exec', headers: auth, payload: { command: ['cat /built; pwd; ls -A'], shell: true } });
    assert.equal(exec.statusCode, 200, exec.body);
    assert.deepEqual(exec.json(), { exit_code: 0, stdout: 'api-built\n/ctx\nhello.txt\nrootfs.tar\n', stderr: '', stdout_truncated: false, stderr_truncated: false });
    assert.deepEqual(store.leftovers(), { images: '', containers: '' });
  });

  it('answers errors found before the build with their status, and a failing build as a final event or a 422', async () => {
    const failing = contextTar('failing', { Dockerfile: 'FROM scratch\nADD rootfs.tar /\nRUN echo api-boom && false\n' });
    const streamed = await build('apibase', failing);
    assert.equal(streamed.statusCode, 200);
    const last = events(streamed.body).at(-1) as Record<string, unknown>;
    assert.equal(last.type, 'error');
    assert.equal(last.statusCode, 422);
    assert.equal(last.code, 'ZOMG_BUILD_FAILED');
    assert.match(String(last.message), /api-boom/);

    const plain = await build('apibase', failing, '', 'application/json');
    assert.equal(plain.statusCode, 422);
    assert.equal(plain.json().code, 'ZOMG_BUILD_FAILED');

    const none = await build('apibase', contextTar('none', {}));
    assert.equal(none.statusCode, 400);
    assert.equal(none.json().code, 'ZOMG_NO_DOCKERFILE');
    assert.doesNotMatch(none.body, /staging|zomg-test-/, 'no host path in the message');
    // A Dockerfile that is a symlink out of the context reads nothing of the server.
    const linkDir = join(work, 'link');
    mkdirSync(linkDir);
    execFileSync('ln', ['-s', '/etc/hostname', join(linkDir, 'Dockerfile')]);
    const link = await build('apibase', execFileSync('tar', ['-c', '-f', '-', '-C', linkDir, '.']));
    assert.equal(link.statusCode, 400);
    assert.equal(link.json().code, 'ZOMG_NO_DOCKERFILE');
    const escape = await build('apibase', failing, '?dockerfile=../../etc/passwd');
    assert.equal(escape.statusCode, 400);
    assert.equal(escape.json().code, 'ZOMG_INVALID_ARGUMENT');
    const badBuilder = await build('apibase', failing, '?builder=buildkit');
    assert.equal(badBuilder.statusCode, 400);
    assert.equal(badBuilder.json().code, 'ZOMG_INVALID_BUILDER');
    const badName = await build('Bad_Name', failing);
    assert.equal(badName.statusCode, 400);
    assert.equal(badName.json().code, 'ZOMG_INVALID_NAME');

    assert.deepEqual((await app.inject({ method: 'GET', url: '/v1/bases/apibase', headers: auth })).json().versions.length, 1, 'nothing recorded');
    assert.deepEqual(store.leftovers(), { images: '', containers: '' });
  });

  it('saves a box as a base', async () => {
    const res = await app.inject({ method: 'POST', url: '/v1/projects/default/bases', headers: auth, payload: { box: 'apibox', name: 'apisaved' } });
    assert.equal(res.statusCode, 201, res.body);
    assert.equal(res.json().provenance.kind, 'save');
    assert.equal(res.json().provenance.build.parent_version, 'apibase');
    const parent = (await app.inject({ method: 'GET', url: '/v1/bases/apibase', headers: auth })).json().versions[0];
    assert.equal(parent.config.workdir, '/ctx');
    assert.deepEqual(res.json().config, parent.config, "the parent's image config is kept");
    const missing = await app.inject({ method: 'POST', url: '/v1/projects/default/bases', headers: auth, payload: { box: 'nope', name: 'apisaved' } });
    assert.equal(missing.statusCode, 404);
    assert.equal(missing.json().code, 'ZOMG_BOX_NOT_FOUND');
    const extra = await app.inject({ method: 'POST', url: '/v1/projects/default/bases', headers: auth, payload: { box: 'apibox', name: 'x', from: 'y' } });
    assert.equal(extra.statusCode, 400);
    const doc = (await app.inject({ method: 'GET', url: '/v1/openapi.json' })).json();
    assert.ok(doc.paths['/v1/bases/{name}/build']);
    assert.ok(doc.paths['/v1/projects/{project}/bases']);
  });
});
