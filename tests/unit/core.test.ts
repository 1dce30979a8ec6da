import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HTTP_STATUS, InvalidArgumentError, errorFromWire, fileNotFound } from '../../src/core/errors.js';
import { isLoopbackHost } from '../../src/core/net.js';
import { nameProblem, parseBoxName, parseEnvAssignment, parseTag } from '../../src/core/names.js';
import { parseBaseRef, parseBoxRef } from '../../src/core/refs.js';
import type { ProjectName } from '../../src/core/names.js';
import { nextSnapshotName, nextVersionName } from '../../src/core/versions.js';

const env = { project: 'proj' as ProjectName };

describe('names', () => {
  it('accepts safe names and explains each broken rule', () => {
    for (const ok of ['a', 'box-base', 'a1-b2', '0', 'x'.repeat(63)]) assert.equal(nameProblem(ok), undefined, ok);
    assert.match(nameProblem('') ?? '', /empty/);
    assert.match(nameProblem('x'.repeat(64)) ?? '', /64 characters/);
    assert.match(nameProblem('Abc') ?? '', /uppercase/);
    assert.match(nameProblem('a--b') ?? '', /"--"/);
    assert.match(nameProblem('-a') ?? '', /starts with/);
    assert.match(nameProblem('a-') ?? '', /ends with/);
    assert.match(nameProblem('a_b') ?? '', /characters other than/);
    assert.throws(() => parseBoxName('a--b'), (e: unknown) => e instanceof InvalidArgumentError && e.code === 'ZOMG_INVALID_NAME' && /1-63 characters/.test(e.message));
  });

  it('parses tags and environment, rejecting reserved keys', () => {
    assert.deepEqual(parseTag('env=ci_1.0'), ['env', 'ci_1.0']);
    assert.throws(() => parseTag('novalue'), /invalid tag/);
    assert.throws(() => parseTag('K=v'), /invalid tag/);
    assert.deepEqual(parseEnvAssignment('FOO=a=b'), ['FOO', 'a=b']);
    for (const k of ['ZOMG_PROJECT', 'BOX_NAME', 'ZOMG_API_URL', 'TERM']) {
      assert.throws(() => parseEnvAssignment(`${k}=x`), /environment variable is reserved/);
    }
    assert.throws(() => parseEnvAssignment('1X=y'), /invalid environment variable/);
  });
});

describe('refs', () => {
  it('parses every box ref form, colon before dot', () => {
    assert.deepEqual(parseBoxRef('web', env), { kind: 'box', ref: { project: 'proj', name: 'web' } });
    assert.deepEqual(parseBoxRef('p1:web', env), { kind: 'box', ref: { project: 'p1', name: 'web' } });
    assert.deepEqual(parseBoxRef('p1.web', env), { kind: 'box', ref: { project: 'p1', name: 'web' } });
    assert.deepEqual(parseBoxRef('-', env), { kind: 'ephemeral' });
    assert.throws(() => parseBoxRef('.', env), /ZOMG_PROJECT and BOX_NAME are not set/);
    assert.deepEqual(parseBoxRef('.', { ...env, currentProject: 'p2', currentBox: 'b2' }), { kind: 'box', ref: { project: 'p2', name: 'b2' } });
  });

  it('parses base refs', () => {
    assert.deepEqual(parseBaseRef('box-base'), { kind: 'name', name: 'box-base' });
    assert.deepEqual(parseBaseRef('box-base:0123ABcd'), { kind: 'tag', alias: 'box-base', tagPrefix: '0123abcd' });
    assert.throws(() => parseBaseRef('box-base:xyz'), /sha256 prefix/);
  });
});

describe('versions and snapshot names', () => {
  it('uses the bare name first, then UTC stamps that never collide', () => {
    const taken = new Set<string>();
    const at = new Date('2026-01-01T12:00:00.900Z');
    const next = (): string => {
      const n = nextVersionName('my-base', at, (x) => taken.has(x));
      taken.add(n);
      return n;
    };
    assert.equal(next(), 'my-base');
    assert.equal(next(), 'my-base-v20260101120000');
    assert.equal(next(), 'my-base-v20260101120001');
    assert.throws(() => nextVersionName('x'.repeat(50), at, () => true), /too long/);
  });

  it('takes the next number above the highest vN', () => {
    assert.equal(nextSnapshotName([]), 'v0');
    assert.equal(nextSnapshotName(['v0', 'v1', 'named']), 'v2');
    assert.equal(nextSnapshotName(['v7', 'v2']), 'v8');
    assert.equal(nextSnapshotName(['v01', 'vx']), 'v0');
  });
});

describe('errors', () => {
  it('maps each kind to one status and rebuilds wire errors', () => {
    assert.equal(HTTP_STATUS.pool_full, 507);
    const e = errorFromWire(404, { code: 'ZOMG_BOX_NOT_FOUND', message: 'box "a:b" not found', hint: 'h' });
    assert.equal(e.kind, 'not_found');
    assert.equal(e.code, 'ZOMG_BOX_NOT_FOUND');
    assert.equal(e.hint, 'h');
  });

  it('says "no such file" one way, here or in a box', () => {
    const here = fileNotFound('/tmp/x y.tar');
    assert.equal(here.code, 'ZOMG_FILE_NOT_FOUND');
    assert.equal(HTTP_STATUS[here.kind], 400);
    assert.equal(here.message, 'no such file or directory: "/tmp/x y.tar"');
    const box = fileNotFound('/no/such', { where: 'box' });
    assert.equal(box.code, 'ZOMG_PATH_NOT_FOUND');
    assert.equal(HTTP_STATUS[box.kind], 404);
    assert.equal(box.message, 'no such file or directory in the box: "/no/such"');
    assert.equal(fileNotFound('/srv/in', { where: 'box', what: 'directory' }).message, 'no such directory in the box: "/srv/in"');
    assert.equal(fileNotFound('out', { what: 'directory' }).hint, 'create it first, or copy to an existing directory');
  });
});

describe('loopback', () => {
  it('knows this machine\'s loopback names and nothing else', () => {
    for (const host of ['localhost', '::1', '127.0.0.1', '127.1.2.3']) assert.equal(isLoopbackHost(host), true, host);
    for (const host of ['[::1]', '127.0.0.1.example.com', '0.0.0.0', '10.0.0.1', 'example.com', '']) assert.equal(isLoopbackHost(host), false, host);
  });
});
