/**
 * `zomg base build` and `zomg base save` as a user runs them, locally and against `zomg
 * serve`: the build output streams to stderr, the result and errors read the same in both
 * modes, and a built base boots boxes that start in its WORKDIR.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { busyboxRootfsTar } from '../helpers/fixtures.js';
import { hasPodman, type TestStore, testStore } from '../helpers/podman.js';
import { type TestPool, isRoot, makeTestPool } from '../helpers/pool.js';
import { MAIN, type Served, startServe } from '../helpers/cli.js';


interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

const dockerAnswers = (): boolean => spawnSync('docker', ['version', '--format', '{{.Server.Version}}'], { stdio: 'ignore', timeout: 10_000 }).status === 0;

describe('zomg base build / save (local and remote)', { skip: !isRoot() ? 'needs root for btrfs' : !hasPodman() ? 'podman is not installed' : false, concurrency: false }, () => {
  let pool: TestPool;
  let store: TestStore;
  let stateDir: string;
  let work: string;
  let server: Served | undefined;
  let url = '';
  let env: NodeJS.ProcessEnv;

  const zomg = (args: string[], options: { cwd?: string; remote?: boolean } = {}): Result => {
    const r = spawnSync(process.execPath, [MAIN, ...args], {
      env: { ...env, ...(options.remote ? { ZOMG_URL: url } : {}) },
      cwd: options.cwd ?? work,
      encoding: 'utf8',
      timeout: 180_000,
    });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  const remote = (args: string[], cwd?: string): Result => zomg(args, { remote: true, ...(cwd ? { cwd } : {}) });
  const context = (name: string, files: Record<string, string>): string => {
    const dir = join(work, name);
    mkdirSync(dir);
    execFileSync('cp', [busyboxRootfsTar(), join(dir, 'rootfs.tar')]);
    for (const [path, text] of Object.entries(files)) writeFileSync(join(dir, path), text);
    return dir;
  };

  before(async () => {
    pool = makeTestPool(1024);
    store = testStore(pool.mnt);
    stateDir = mkdtempSync(join(tmpdir(), 'zomg-e2e-builds-'));
    work = mkdtempSync(join(tmpdir(), 'zomg-e2e-ctx-'));
    env = { ...process.env, ZOMG_HOME: stateDir, ZOMG_POOL_PATH: pool.mnt, ZOMG_NO_SIZE_WORKER: '1' };
    for (const k of ['ZOMG_PROJECT', 'ZOMG_URL', 'ZOMG_API_URL', 'ZOMG_PROFILE']) delete env[k];
    server = await startServe(env);
    url = server.url;
  });

  after(async () => {
    await server?.stop();
    try {
      store?.wipe();
    } finally {
      pool?.cleanup();
      if (stateDir) rmSync(stateDir, { recursive: true, force: true });
      if (work) rmSync(work, { recursive: true, force: true });
    }
  });

  const DOCKERFILE = 'FROM scratch\nADD rootfs.tar /\nRUN mkdir /work && echo cli-built > /built\nENV FOO=bar\nWORKDIR /work\n';
  const SHA = createHash('sha256').update(DOCKERFILE).digest('hex');

  it('builds the Dockerfile of the current directory, streaming its output, and inspects it in both modes', () => {
    const dir = context('local', { Dockerfile: DOCKERFILE });
    // The engine is detected (docker first): where docker answers, podman is asked for.
    const r = zomg(['base', 'build', 'web', ...(dockerAnswers() ? ['--builder', 'podman'] : [])], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `Built web (alias web, builder podman, tag ${SHA.slice(0, 12)})\n`);
    assert.match(r.stderr, /RUN mkdir \/work && echo cli-built > \/built/, 'the engine output reaches the user');

    const inspect = zomg(['base', 'inspect', 'web', '--tag', SHA.slice(0, 8)]);
    assert.equal(inspect.code, 0, inspect.stderr);
    assert.match(inspect.stdout, new RegExp(`^VERSION\\s+KIND\\s+TAG\\s+BUILDER\\s+PARENT\\s+SIZE\\s+CREATED\\nweb\\s+build\\s+${SHA}\\s+podman\\s+-\\s`));
    assert.match(inspect.stdout, /ENV\s+PATH=\S+ FOO=bar\nWORKDIR\s+\/work\n/);
    assert.ok(inspect.stdout.includes(`--- web build script ---\n${DOCKERFILE.trimEnd()}`));
    assert.equal(remote(['base', 'inspect', 'web', '--tag', SHA.slice(0, 8)]).stdout, inspect.stdout);

    assert.equal(zomg(['create', 'box1', '--base', `web:${SHA.slice(0, 8)}`]).code, 0);
    assert.equal(zomg(['exec', 'box1', '--', 'pwd']).stdout, '/work\n');
    assert.equal(remote(['exec', 'box1', '--sh', '--', 'cat /built; echo $FOO']).stdout, 'cli-built\nbar\n');
  });

  it('saves a box as a base in both modes', () => {
    assert.equal(zomg(['exec', 'box1', '--sh', '--', 'echo mine > /work/mine']).code, 0);
    const local = zomg(['base', 'save', 'saved', 'box1']);
    assert.equal(local.code, 0, local.stderr);
    assert.equal(local.stdout, 'Saved saved (alias saved, parent web)\n');
    const rem = remote(['base', 'save', 'saved', 'default:box1', '--json']);
    assert.equal(rem.code, 0, rem.stderr);
    const v = JSON.parse(rem.stdout);
    assert.match(v.name, /^saved-v\d{14}$/);
    assert.equal(v.provenance.kind, 'save');
    assert.equal(zomg(['create', 'box2', '--base', 'saved']).code, 0);
    assert.equal(zomg(['exec', 'box2', '--', 'cat', 'mine']).stdout, 'mine\n');

    const missing = zomg(['base', 'save', 'saved', 'nope']);
    assert.equal(missing.code, 1);
    assert.equal(missing.stderr, 'error: box "default:nope" not found\nhint: run `zomg list` to see your boxes\n');
    assert.equal(remote(['base', 'save', 'saved', 'nope']).stderr, missing.stderr);
  });

  it('builds remotely from an uploaded context with a Dockerfile outside it', () => {
    const dir = context('remote', { 'hello.txt': 'hi\n' });
    writeFileSync(join(work, 'Dockerfile.remote'), 'FROM scratch\nADD rootfs.tar /\nCOPY . /ctx/\nRUN echo remote-built > /built\n');
    const r = remote(['base', 'build', 'web', '-f', 'Dockerfile.remote', 'remote', '--builder', 'podman']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Built web-v\d{14} \(alias web, builder podman, tag [0-9a-f]{12}\)\n$/);
    assert.match(r.stderr, /RUN echo remote-built/, 'the server streams the build output back');
    assert.equal(zomg(['create', 'box3', '--base', 'web']).code, 0);
    // The context is what it is locally: the Dockerfile from outside it is not part of it.
    assert.equal(zomg(['exec', 'box3', '--sh', '--', 'cat /built; ls -A /ctx']).stdout, 'remote-built\nhello.txt\nrootfs.tar\n');
    assert.ok(dir);
  });

  it('reports bad input the same way in both modes, recording nothing', () => {
    const versions = zomg(['base', 'inspect', 'web', '--json']).stdout;
    const empty = join(work, 'empty');
    mkdirSync(empty);
    const local = zomg(['base', 'build', 'web'], { cwd: empty });
    assert.equal(local.code, 1);
    assert.equal(local.stderr, 'error: no Dockerfile: "Dockerfile" does not exist or is not a file\nhint: run in a directory with a Dockerfile, or pass -f <Dockerfile>\n');
    assert.equal(remote(['base', 'build', 'web'], empty).stderr, local.stderr);
    // One copy of the context checks (engine/build-context.ts): the same code and message both ways.
    for (const args of [['base', 'build', 'web', 'missing-dir', '-f', 'empty/../local/Dockerfile'], ['base', 'build', 'web', 'empty'], ['base', 'build', 'web', 'empty', '-f', 'nope/Dockerfile']]) {
      const here = zomg([...args, '--json']);
      const there = remote([...args, '--json']);
      assert.equal(here.code, 1, args.join(' '));
      assert.deepEqual(JSON.parse(there.stdout), JSON.parse(here.stdout), args.join(' '));
    }
    assert.equal(JSON.parse(zomg(['base', 'build', 'web', 'missing-dir', '-f', 'empty/../local/Dockerfile', '--json']).stdout).error.code, 'ZOMG_NO_BUILD_CONTEXT');

    const failing = context('failing', { Dockerfile: 'FROM scratch\nADD rootfs.tar /\nRUN echo cli-boom && false\n' });
    const rem = remote(['base', 'build', 'web', failing, '--builder', 'podman']);
    assert.equal(rem.code, 1);
    assert.match(rem.stderr, /cli-boom/);
    assert.match(rem.stderr, /error: the podman build of web:latest failed/);
    const json = remote(['base', 'build', 'web', failing, '--builder', 'podman', '--json']);
    assert.equal(JSON.parse(json.stdout).error.code, 'ZOMG_BUILD_FAILED');

    if (spawnSync('nerdctl', ['--version'], { stdio: 'ignore' }).error) {
      const noEngine = zomg(['base', 'build', 'web', failing, '--builder', 'nerdctl']);
      assert.equal(noEngine.code, 1);
      assert.match(noEngine.stderr, /^error: the builder nerdctl cannot be used \(nerdctl: not installed\)/);
    }
    assert.equal(zomg(['base', 'inspect', 'web', '--json']).stdout, versions, 'nothing recorded');
    assert.deepEqual(store.leftovers(), { images: '', containers: '' });
  });
});
