/**
 * What a user sees when an import cannot work, through the engine and through the HTTP API:
 * a compression bomb that fills the pool is pool-full (507) with nothing left behind, and a
 * damaged compressed stream is an invalid archive (422) that names its compression.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildServer } from '../../src/api/server.js';
import type { ZomgError } from '../../src/core/errors.js';
import { type TestEngine, makeTestEngine } from '../helpers/engine.js';
import { busyboxRootfsTar, compress, compressedBomb, seeded, textTar } from '../helpers/fixtures.js';
import { isRoot } from '../helpers/pool.js';

const TOKEN = 'test-token-0123456789';
const auth = { authorization: `Bearer ${TOKEN}` };

describe('import errors that name their cause', { skip: !isRoot() && 'needs root for btrfs' }, () => {
  let t: TestEngine;
  let app: FastifyInstance;
  const staging = (): string[] => readdirSync(join(t.pool.mnt, 'staging'));
  const bases = async (): Promise<string> => JSON.stringify(await t.engine.listBases());
  /** Deleted subvolumes give their space back in the background: wait for it, as a user would. */
  const settle = (): void => {
    execFileSync('btrfs', ['-q', 'subvolume', 'sync', t.pool.mnt]);
    execFileSync('sync');
  };

  before(async () => {
    // A small mixed-mode pool, quick to fill; the short-write case of a larger pool is
    // covered in tar-import.test.ts.
    t = await makeTestEngine({}, 160);
    app = await buildServer({ service: t.engine, token: TOKEN });
    await t.engine.importBase('bb', busyboxRootfsTar());
  });
  after(async () => {
    await app?.close();
    await t?.cleanup();
  });

  it('a compression bomb that fills the pool is ZOMG_POOL_FULL, with staging cleaned and the space back', async () => {
    const listed = await bases();
    const file = join(t.stateDir, 'bomb.tar.gz');
    writeFileSync(file, compressedBomb('gz', 200 << 20));
    await assert.rejects(t.engine.importBase('bomb', file), (err: unknown) => {
      const e = err as ZomgError;
      assert.equal(e.code, 'ZOMG_POOL_FULL', e.message);
      assert.equal(e.kind, 'pool_full');
      assert.match(e.message, /filled up while extracting the archive/);
      return true;
    });
    assert.deepEqual(staging(), []);
    assert.equal(await bases(), listed, 'base list unchanged');
    settle();
    // The space is back: a real base imports into the same small pool.
    await t.engine.importBase('bb-again', busyboxRootfsTar('zst'));
    await t.engine.deleteBaseAlias('bb-again');
    await t.engine.deleteBaseVersion('bb-again');
  });

  it('the API answers a bomb with 507 and a damaged stream with 422 naming the compression', async () => {
    settle();
    const listed = await bases();
    // zstd here, gzip above; xz is covered in tar-import.test.ts.
    const res = await app.inject({
      method: 'POST',
      url: '/v1/bases/bomb/versions',
      headers: { ...auth, 'content-type': 'application/octet-stream' },
      payload: compressedBomb('zst', 200 << 20),
    });
    assert.equal(res.statusCode, 507, res.body);
    assert.equal(res.json().code, 'ZOMG_POOL_FULL');
    assert.doesNotMatch(res.body, /\/tmp|\/mnt|staging/, 'no host path in the answer');
    assert.deepEqual(staging(), []);
    assert.equal(await bases(), listed);
    const names = { gz: 'gzip', zst: 'zstd', xz: 'xz' } as const;
    for (const c of ['gz', 'zst', 'xz'] as const) {
      const whole = compress(textTar(3), c);
      const rnd = seeded(77);
      for (let i = 0; i < 2; i++) {
        const offset = 16 + Math.floor(rnd() * (whole.length - 32));
        const damaged = i % 2 === 0 ? Buffer.from(whole) : whole.subarray(0, offset);
        if (i % 2 === 0) damaged.fill(0x5a, offset, offset + 8);
        const res = await app.inject({
          method: 'POST',
          url: '/v1/bases/damaged/versions',
          headers: { ...auth, 'content-type': 'application/octet-stream' },
          payload: damaged,
        });
        assert.equal(res.statusCode, 422, `${c} at ${offset}: ${res.body}`);
        assert.equal(res.json().code, 'ZOMG_INVALID_ARCHIVE');
        assert.match(res.json().message, new RegExp(`^corrupt ${names[c]} data in the archive`), res.body);
        assert.ok(res.json().hint, 'a hint says what to do');
      }
    }
    assert.deepEqual(staging(), []);
    assert.equal(await bases(), listed);
  });
});
