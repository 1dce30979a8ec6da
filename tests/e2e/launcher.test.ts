/**
 * The `zomg` launcher (src/cli/launcher.ts) as a user meets it: the same output with and
 * without a code cache, a cache written beside the bundle on first use (and one covering
 * the engine per command word once a command opened it), a corrupt cache replaced, and a read-only install
 * that works without writing anything. Each test runs a copy of the built launcher and
 * bundle in a directory of its own beside dist/bundle/cli (so packages still resolve).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { copyFileSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MAIN } from '../helpers/cli.js';
import { busyboxRootfsTar } from '../helpers/fixtures.js';
import { type TestPool, isRoot, makeTestPool } from '../helpers/pool.js';

const BUILT = dirname(MAIN);

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** A copy of the built launcher and bundle, without any cache. */
function install(): { dir: string; zomg(args: string[], env?: NodeJS.ProcessEnv, nodeOptions?: string[]): Result; direct(args: string[]): Result; caches(): string[]; cleanup(): void } {
  const dir = mkdtempSync(join(dirname(BUILT), 'cli-launcher-test-'));
  for (const file of ['zomg.cjs', 'zomg-main.cjs']) copyFileSync(join(BUILT, file), join(dir, file));
  const result = (r: ReturnType<typeof spawnSync>): Result => ({ code: r.status, stdout: String(r.stdout), stderr: String(r.stderr) });
  return {
    dir,
    zomg(args, env = process.env, nodeOptions = []) {
      return result(spawnSync(process.execPath, [...nodeOptions, join(dir, 'zomg.cjs'), ...args], { env, encoding: 'utf8', timeout: 120_000 }));
    },
    /** As the `bin` runs: the file itself, through its shebang (Node on the PATH). */
    direct(args) {
      const env = { ...process.env, PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}` };
      return result(spawnSync(join(dir, 'zomg.cjs'), args, { env, encoding: 'utf8', timeout: 120_000 }));
    },
    caches: () => readdirSync(dir).filter((f) => f !== 'zomg.cjs' && f !== 'zomg-main.cjs').sort(),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

describe('zomg launcher: the code cache', () => {
  it('writes a cache on first use, then runs from it with the same output', () => {
    const z = install();
    try {
      const first = z.zomg(['--version']);
      assert.deepEqual(first, { code: 0, stdout: '0.1.0\n', stderr: '' });
      const [cache, ...others] = z.caches();
      assert.match(cache ?? '', /^zomg-main\.[0-9a-f]{16}\.light\.v8cache$/);
      assert.deepEqual(others, []);
      const written = statSync(join(z.dir, cache as string)).mtimeMs;
      const help = z.zomg(['--help']);
      assert.equal(help.code, 0);
      assert.match(help.stdout, /Usage: zomg/);
      assert.deepEqual(z.zomg(['--version']), first);
      assert.equal(statSync(join(z.dir, cache as string)).mtimeMs, written, 'a cache V8 accepted is not rewritten');
      // A usage error reads the same from the cache.
      const bad = z.zomg(['bogus']);
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /unknown command 'bogus'/);
    } finally {
      z.cleanup();
    }
  });

  it('keeps the caches of starts with other Node options apart, so that none rejects another\'s', () => {
    const z = install();
    try {
      const version = { code: 0, stdout: '0.1.0\n', stderr: '' };
      // A V8 option (part of what V8 checks a cache against) on Node's command line.
      assert.deepEqual(z.zomg(['--version'], process.env, ['--max-old-space-size=999']), version);
      const [tagged, ...none] = z.caches();
      assert.match(tagged ?? '', /^zomg-main\.[0-9a-f]{16}\.[0-9a-f]{8}\.light\.v8cache$/);
      assert.deepEqual(none, []);
      assert.deepEqual(z.zomg(['--version']), version);
      const plain = z.caches().find((f) => /^zomg-main\.[0-9a-f]{16}\.light\.v8cache$/.test(f));
      assert.ok(plain, `a cache of its own for a start without options: ${z.caches().join(' ')}`);
      const written = (f: string): number => statSync(join(z.dir, f)).mtimeMs;
      const before = [written(tagged as string), written(plain)];
      for (let i = 0; i < 2; i++) {
        assert.deepEqual(z.zomg(['--version'], process.env, ['--max-old-space-size=999']), version);
        assert.deepEqual(z.zomg(['--version']), version);
      }
      // As the `bin` runs: the file itself, through its shebang, from the plain cache.
      assert.deepEqual(z.direct(['--version']), version);
      assert.equal(z.caches().length, 2);
      assert.deepEqual([written(tagged as string), written(plain)], before, 'neither start rejected (and rewrote) the other\'s cache');
      // Options in NODE_OPTIONS count too; and one set of caches with options is kept: the
      // latest (options that change from start to start leave no trail).
      assert.deepEqual(z.zomg(['--version'], { ...process.env, NODE_OPTIONS: '--max-old-space-size=998' }), version);
      const [newTagged, ...rest] = z.caches().filter((f) => f !== plain);
      assert.match(newTagged ?? '', /^zomg-main\.[0-9a-f]{16}\.[0-9a-f]{8}\.light\.v8cache$/);
      assert.notEqual(newTagged, tagged);
      assert.deepEqual(rest, []);
      assert.equal(written(plain), before[1]);
    } finally {
      z.cleanup();
    }
  });

  it('leaves the bundle a program of its own: run by Node, it runs the CLI', () => {
    const z = install();
    try {
      const r = spawnSync(process.execPath, [join(z.dir, 'zomg-main.cjs'), '--version'], { encoding: 'utf8', timeout: 120_000 });
      assert.deepEqual({ code: r.status, stdout: r.stdout, stderr: r.stderr }, { code: 0, stdout: '0.1.0\n', stderr: '' });
      assert.deepEqual(z.caches(), []);
    } finally {
      z.cleanup();
    }
  });

  it('replaces a cache V8 rejects (corrupt, or from another Node) and still runs', () => {
    const z = install();
    try {
      z.zomg(['--version']);
      const cache = join(z.dir, z.caches()[0] as string);
      writeFileSync(cache, Buffer.alloc(4096, 7));
      assert.deepEqual(z.zomg(['--version']), { code: 0, stdout: '0.1.0\n', stderr: '' });
      assert.notDeepEqual(readFileSync(cache), Buffer.alloc(4096, 7));
      assert.deepEqual(z.zomg(['--version']), { code: 0, stdout: '0.1.0\n', stderr: '' });
      assert.equal(z.caches().length, 1);
    } finally {
      z.cleanup();
    }
  });

  it('removes the temporary file a start killed mid-write left, and leaves a live writer\'s alone', () => {
    const z = install();
    try {
      // pid 2^22+1 is above any pid_max, so no process has it; this test process is alive.
      const dead = join(z.dir, `zomg-main.0123456789abcdef.light.v8cache.${2 ** 22 + 1}.tmp`);
      const live = join(z.dir, `zomg-main.0123456789abcdef.light.v8cache.${process.pid}.tmp`);
      writeFileSync(dead, 'half');
      writeFileSync(live, 'half');
      assert.deepEqual(z.zomg(['--version']), { code: 0, stdout: '0.1.0\n', stderr: '' });
      const left = z.caches();
      assert.ok(!left.includes(dead.slice(z.dir.length + 1)), `the dead writer's file stays: ${left.join(' ')}`);
      assert.ok(left.includes(live.slice(z.dir.length + 1)), 'a live writer\'s file was removed');
      assert.ok(left.some((f) => f.endsWith('.light.v8cache')));
    } finally {
      z.cleanup();
    }
  });

  it('runs from a read-only install without writing anything', { skip: !isRoot() && 'needs root for a read-only bind mount' }, () => {
    const z = install();
    execFileSync('mount', ['--bind', z.dir, z.dir]);
    try {
      execFileSync('mount', ['-o', 'remount,ro,bind', z.dir]);
      assert.deepEqual(z.zomg(['--version']), { code: 0, stdout: '0.1.0\n', stderr: '' });
      assert.deepEqual(z.zomg(['--version']), { code: 0, stdout: '0.1.0\n', stderr: '' });
      assert.deepEqual(z.caches(), []);
    } finally {
      execFileSync('umount', [z.dir]);
      z.cleanup();
    }
  });

  describe('with an engine', { skip: !isRoot() && 'needs root for btrfs' }, () => {
    let pool: TestPool;
    let stateDir: string;
    let env: NodeJS.ProcessEnv;
    before(() => {
      pool = makeTestPool(256);
      stateDir = mkdtempSync(join(tmpdir(), 'zomg-launcher-'));
      env = { ...process.env, ZOMG_HOME: stateDir, ZOMG_POOL_PATH: pool.mnt, ZOMG_PROJECT: 'launcher', ZOMG_NO_SIZE_WORKER: '1' };
      delete env.ZOMG_URL;
      delete env.ZOMG_API_URL;
      delete env.ZOMG_PROFILE;
    });
    after(() => {
      pool?.cleanup();
      rmSync(stateDir, { recursive: true, force: true });
    });

    it('keeps a cache per command word once a command has opened the engine', async () => {
      const z = install();
      try {
        assert.equal(z.zomg(['--version'], env).code, 0);
        const [light] = z.caches();
        assert.match(light ?? '', /^zomg-main\.[0-9a-f]{16}\.light\.v8cache$/);
        const none = z.zomg(['list'], env);
        assert.deepEqual(none, { code: 0, stdout: 'No boxes\n', stderr: '' });
        const stem = (light as string).replace(/light\.v8cache$/, '');
        const cacheOf = (word: string): string => join(z.dir, `${stem}cmd-${word}.v8cache`);
        const seen = (word: string): string => readFileSync(join(z.dir, `${stem}cmd-${word}.commands`), 'utf8');
        const written = (word: string): number => statSync(cacheOf(word)).mtimeMs;
        assert.deepEqual(z.caches(), [`${stem}cmd-list.commands`, `${stem}cmd-list.v8cache`, light], 'the light cache stays for commands that open no engine');
        assert.equal(seen('list'), 'list\n');
        // Each command word that opens the engine gets a cache of its own, holding only the code it ran.
        const imported = z.zomg(['base', 'import', 'bb', '--file', busyboxRootfsTar()], env);
        assert.equal(imported.code, 0, imported.stderr);
        assert.equal(z.zomg(['create', 'one', '--base', 'bb'], env).code, 0);
        const ran = z.zomg(['exec', 'one', '--', 'sh', '-c', 'echo hello; exit 3'], env);
        assert.deepEqual(ran, { code: 3, stdout: 'hello\n', stderr: '' });
        assert.equal(seen('base'), 'base import\n');
        assert.equal(seen('create'), 'create\n');
        assert.equal(seen('exec'), 'exec\n');
        assert.ok(statSync(cacheOf('exec')).size > 0);
        // A new command of a word adds its code to that word's cache.
        assert.equal(z.zomg(['base', 'list'], env).code, 0);
        assert.equal(seen('base'), 'base import\nbase list\n');
        const before = Object.fromEntries(['list', 'base', 'create', 'exec'].map((w) => [w, written(w)]));
        const files = z.caches();
        assert.deepEqual(z.zomg(['list', '-q'], env), { code: 0, stdout: 'one\n', stderr: '' });
        assert.deepEqual(z.zomg(['exec', 'one', '--', 'true'], env), { code: 0, stdout: '', stderr: '' });
        // A global option's value before the command word (a project here) names no cache, and leaves them as they are.
        assert.deepEqual(z.zomg(['-p', 'launcher', 'exec', 'one', '--', 'true'], env), { code: 0, stdout: '', stderr: '' });
        assert.deepEqual(Object.fromEntries(['list', 'base', 'create', 'exec'].map((w) => [w, written(w)])), before, 'commands seen before leave their caches as they are');
        assert.deepEqual(z.caches(), files, 'no cache is named after a guess (a project, a box)');
        // A project named like another command word: its cache is what the start guesses. Runs
        // that started from another word's cache leave their own word's cache as it is (two
        // commands of a word used to take turns rewriting it).
        const baseSeen = seen('base');
        for (let i = 0; i < 2; i++) {
          assert.equal(z.zomg(['-p', 'list', 'base', 'list'], env).code, 0);
          assert.notEqual(z.zomg(['-p', 'list', 'base', 'delete', 'nothing-here'], env).code, 0);
        }
        assert.equal(written('base'), before.base);
        assert.equal(seen('base'), baseSeen);
        // A word too long to be a command's names no cache, and is the CLI's to refuse.
        const long = z.zomg(['--json', '-p', 'a'.repeat(220), 'list'], env);
        assert.equal(long.code, 1, long.stderr);
        assert.equal((JSON.parse(long.stdout) as { error: { code: string } }).error.code, 'ZOMG_INVALID_NAME');
        assert.equal(z.zomg(['a'.repeat(220)], env).code, 2);
        assert.deepEqual(z.caches(), files);
        // A server leaves the cache as it found it (its code would weigh on every other start).
        // (A global option before the command word, whose value the launcher cannot tell from one.)
        const server = spawn(process.execPath, [join(z.dir, 'zomg.cjs'), '--state-dir', stateDir, 'serve', '--listen', '127.0.0.1:0', '--no-auth'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
        let said = '';
        server.stdout.on('data', (d: Buffer) => (said += d.toString()));
        server.stderr.on('data', (d: Buffer) => (said += d.toString()));
        const deadline = Date.now() + 60_000;
        while (!/listening|http:\/\//i.test(said) && server.exitCode === null && Date.now() < deadline) await sleep(50);
        assert.match(said, /listening|http:\/\//i, `the server started: ${said}`);
        server.kill('SIGTERM');
        await once(server, 'exit');
        assert.deepEqual(z.caches(), files, 'serve wrote no cache');
        assert.equal(written('list'), before.list);
        // The bundle is no program of its own: the detached worker that measures a new
        // snapshot's size is started through the launcher, and does measure it.
        const measuring = { ...env };
        delete measuring.ZOMG_NO_SIZE_WORKER;
        assert.equal(z.zomg(['snapshot', 'create', 'one'], measuring).code, 0);
        const sized = async (): Promise<unknown> => (JSON.parse(z.zomg(['snapshot', 'list', 'one', '--json'], env).stdout) as Array<{ size_bytes: unknown }>)[0]?.size_bytes;
        const until = Date.now() + 60_000;
        while ((await sized()) === null && Date.now() < until) await sleep(200);
        assert.equal(typeof (await sized()), 'number', 'the worker measured the snapshot');
        assert.ok(!z.caches().some((f) => f.includes('compute-sizes')), 'the worker wrote no cache');
        assert.equal(seen('snapshot'), 'snapshot create\nsnapshot list\n');
        // A diff raises TurboFan's threshold (a V8 flag, which V8's tag of the flags shows),
        // except in the run that writes its word's cache: V8 would refuse a cache marked with
        // other flags at the next start, and every diff would rewrite it.
        const probe = join(z.dir, 'flags-probe.cjs');
        writeFileSync(probe, `const v8 = require('node:v8'); const tag = v8.cachedDataVersionTag(); process.on('exit', () => require('node:fs').appendFileSync(${JSON.stringify(join(z.dir, 'flags.log'))}, (v8.cachedDataVersionTag() === tag ? 'same' : 'changed') + '\\n'));`);
        const probed = { ...env, NODE_OPTIONS: `--require ${probe}` };
        const flags = (): string[] => readFileSync(join(z.dir, 'flags.log'), 'utf8').trim().split('\n');
        const diffs: Result[] = [];
        for (let i = 0; i < 3; i++) diffs.push(z.zomg(['diff', 'status', 'one'], probed));
        for (const d of diffs) assert.deepEqual(d, diffs[0]);
        assert.equal(diffs[0]?.code, 0);
        const diffCache = z.caches().find((f) => f.endsWith('.cmd-diff.v8cache') && f.includes('.cmd-') && f.split('.').length === 5);
        assert.ok(diffCache, `a diff cache under the probe's options: ${z.caches().join(' ')}`);
        const diffWritten = statSync(join(z.dir, diffCache)).mtimeMs;
        assert.deepEqual(flags(), ['same', 'changed', 'changed'], 'the first diff wrote the cache with V8\'s flags as they were; the next ones raised the threshold');
        assert.equal(z.zomg(['diff', 'status', 'one'], probed).code, 0);
        assert.equal(z.zomg(['list'], probed).code, 0);
        assert.deepEqual(flags().slice(3), ['changed', 'same'], 'a command that is no burst keeps V8\'s flags');
        assert.equal(statSync(join(z.dir, diffCache)).mtimeMs, diffWritten, 'the diff cache V8 accepted is not rewritten');
        // Nor through a server: the remote client loads built-ins as the changes arrive, which
        // would lose Node's cached code for them after a flag change.
        const remote = spawn(process.execPath, [join(z.dir, 'zomg.cjs'), '--state-dir', stateDir, 'serve', '--listen', '127.0.0.1:0', '--no-auth'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
        try {
          let heard = '';
          remote.stdout.on('data', (d: Buffer) => (heard += d.toString()));
          remote.stderr.on('data', (d: Buffer) => (heard += d.toString()));
          const until = Date.now() + 60_000;
          while (!/http:\/\/127\.0\.0\.1:\d+/.test(heard) && remote.exitCode === null && Date.now() < until) await sleep(50);
          const url = /http:\/\/127\.0\.0\.1:\d+/.exec(heard)?.[0];
          assert.ok(url, `the server said where it listens: ${heard}`);
          for (let i = 0; i < 2; i++) assert.deepEqual(z.zomg(['--url', url, 'diff', 'status', 'one'], probed), diffs[0]);
          assert.deepEqual(flags().slice(5), ['same', 'same'], 'a remote diff keeps V8\'s flags');
        } finally {
          remote.kill('SIGTERM');
          await once(remote, 'exit');
        }
        assert.equal(z.zomg(['delete', 'one'], env).code, 0);
      } finally {
        z.cleanup();
      }
    });
  });
});
