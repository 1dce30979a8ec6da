import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { humanBytes, table } from '../../src/cli/render.js';
import { resolveProject, resolveTarget } from '../../src/cli/settings.js';

describe('API URL resolution (SPEC §10)', () => {
  it('prefers --url, then the profile, then ZOMG_URL, then ZOMG_API_URL, else local', () => {
    const env = { ZOMG_URL: 'http://127.0.0.1:1', ZOMG_API_URL: 'http://127.0.0.1:2', ZOMG_PROFILE: 'my-stage', ZOMG_PROFILE_MY_STAGE_URL: 'http://127.0.0.1:3', ZOMG_PROFILE_MY_STAGE_TOKEN: 'tok' };
    assert.deepEqual(resolveTarget({ url: 'http://127.0.0.1:9/' }, env), { mode: 'remote', url: 'http://127.0.0.1:9', token: undefined });
    assert.deepEqual(resolveTarget({}, env), { mode: 'remote', url: 'http://127.0.0.1:3', token: 'tok' });
    assert.equal((resolveTarget({}, { ...env, ZOMG_PROFILE: undefined }) as { url: string }).url, 'http://127.0.0.1:1');
    assert.equal((resolveTarget({}, { ZOMG_API_URL: 'http://127.0.0.1:2' }) as { url: string }).url, 'http://127.0.0.1:2');
    assert.deepEqual(resolveTarget({ stateDir: '/tmp/s' }, {}), { mode: 'local', stateDir: '/tmp/s' });
    assert.deepEqual(resolveTarget({}, { ZOMG_HOME: '/tmp/h' }), { mode: 'local', stateDir: '/tmp/h' });
    assert.deepEqual(resolveTarget({}, {}), { mode: 'local', stateDir: '/var/lib/zomg' });
  });

  it('offers the local token file only to loopback URLs, never to a profile', () => {
    const dir = mkdtempSync(join(tmpdir(), 'zomg-tok-'));
    try {
      writeFileSync(join(dir, 'token'), 'local-secret-token-0123\n');
      assert.equal((resolveTarget({ url: 'http://127.0.0.1:7070', stateDir: dir }, {}) as { token?: string }).token, 'local-secret-token-0123');
      assert.equal((resolveTarget({ url: 'http://[::1]:7070', stateDir: dir }, {}) as { token?: string }).token, 'local-secret-token-0123');
      assert.equal((resolveTarget({ url: 'http://build-host.example:7070', stateDir: dir }, {}) as { token?: string }).token, undefined);
      assert.equal((resolveTarget({ stateDir: dir }, { ZOMG_PROFILE: 'p', ZOMG_PROFILE_P_URL: 'http://127.0.0.1:1' }) as { token?: string }).token, undefined);
      assert.equal((resolveTarget({ url: 'http://build-host.example:7070', stateDir: dir }, { ZOMG_TOKEN: 't' }) as { token?: string }).token, 't');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names the missing variable exactly when a profile has no URL', () => {
    assert.throws(() => resolveTarget({}, { ZOMG_PROFILE: 'staging' }), { message: 'profile "staging" is selected but ZOMG_PROFILE_STAGING_URL is not set' });
    assert.throws(() => resolveTarget({ profile: 'eu.west-1' }, {}), { message: 'profile "eu.west-1" is selected but ZOMG_PROFILE_EU_WEST_1_URL is not set' });
  });
});

describe('project resolution', () => {
  it('uses --project, ZOMG_PROJECT, the git root name, then default', () => {
    const dir = mkdtempSync(join(tmpdir(), 'zomg-proj-'));
    const repo = join(dir, 'my-repo');
    mkdirSync(join(repo, '.git'), { recursive: true });
    mkdirSync(join(repo, 'sub'));
    const bad = join(dir, 'Bad_Repo');
    mkdirSync(join(bad, '.git'), { recursive: true });
    try {
      assert.equal(resolveProject({ project: 'flag' }, { ZOMG_PROJECT: 'env' }, repo), 'flag');
      assert.equal(resolveProject({}, { ZOMG_PROJECT: 'env' }, repo), 'env');
      assert.equal(resolveProject({}, {}, join(repo, 'sub')), 'my-repo');
      assert.equal(resolveProject({}, {}, bad), 'default');
      assert.throws(() => resolveProject({ project: 'No' }, {}, repo), /invalid project name/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('rendering', () => {
  it('aligns tables and prints human sizes', () => {
    assert.equal(table(['NAME', 'SIZE'], [['a', '1 B'], ['longer', '2.0 KiB']]), 'NAME     SIZE\na        1 B\nlonger   2.0 KiB');
    assert.equal(humanBytes(null), '-');
    assert.equal(humanBytes(1536), '1.5 KiB');
    assert.equal(humanBytes(50 * 1024 * 1024), '50 MiB');
  });
});
