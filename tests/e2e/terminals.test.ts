/**
 * The built CLI on a real terminal (a pty this test drives, as tmux would): `zomg exec -it`
 * and `zomg console`, locally and against `zomg serve` over loopback; `zomg cp`, `ps` and
 * `logs` as a user runs them.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type IPty, spawn as spawnPty } from '@lydell/node-pty';
import { busyboxRootfsTar } from '../helpers/fixtures.js';
import { type TestPool, isRoot, makeTestPool } from '../helpers/pool.js';
import { MAIN, type Served, startServe } from '../helpers/cli.js';

interface Terminal {
  pty: IPty;
  waitFor(re: RegExp, ms?: number): Promise<string>;
  exited: Promise<number>;
}

/** Runs `argv` on a new pty of 100x30, answering busybox's cursor-position query as a terminal does. */
function terminal(argv: string[], env: NodeJS.ProcessEnv): Terminal {
  const pty = spawnPty(argv[0] as string, argv.slice(1), { cols: 100, rows: 30, name: 'xterm-256color', env: env as Record<string, string> });
  let out = '';
  pty.onData((d) => {
    if (d.includes('\x1b[6n')) pty.write('\x1b[1;1R');
    out += d;
  });
  const exited = new Promise<number>((resolve) => pty.onExit(({ exitCode }) => resolve(exitCode)));
  const waitFor = async (re: RegExp, ms = 15_000): Promise<string> => {
    const deadline = Date.now() + ms;
    while (!re.test(out)) {
      if (Date.now() > deadline) {
        pty.kill('SIGKILL');
        throw new Error(`timed out waiting for ${re} in ${JSON.stringify(out)}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    return out;
  };
  return { pty, waitFor, exited };
}

describe('zomg exec -it, console, cp, ps, logs (local and remote)', { skip: !isRoot() && 'needs root for btrfs' }, () => {
  let pool: TestPool;
  let stateDir: string;
  let server: Served | undefined;
  let env: NodeJS.ProcessEnv;
  let remoteEnv: NodeJS.ProcessEnv;

  const zomg = (args: string[], extra: NodeJS.ProcessEnv = {}, input?: string | Buffer) => {
    const r = spawnSync(process.execPath, [MAIN, ...args], { env: { ...env, ...extra }, timeout: 60_000, ...(input !== undefined ? { input } : {}) });
    return { code: r.status, stdout: r.stdout.toString('utf8'), stdoutRaw: r.stdout, stderr: r.stderr.toString('utf8') };
  };

  before(async () => {
    pool = makeTestPool(1024);
    stateDir = mkdtempSync(join(tmpdir(), 'zomg-e2e-term-'));
    env = { ...process.env, ZOMG_HOME: stateDir, ZOMG_POOL_PATH: pool.mnt, ZOMG_NO_SIZE_WORKER: '1', ZOMG_PROJECT: 'proj' };
    delete env.ZOMG_URL;
    delete env.ZOMG_API_URL;
    delete env.ZOMG_PROFILE;
    server = await startServe(env);
    remoteEnv = { ...env, ZOMG_URL: server.url, ZOMG_TOKEN: readFileSync(join(stateDir, 'token'), 'utf8').trim() };
    assert.equal(zomg(['base', 'import', 'bb', '--file', busyboxRootfsTar()]).code, 0);
    assert.equal(zomg(['create', 'web', '--base', 'bb']).code, 0);
  });

  after(async () => {
    await server?.stop();
    if (stateDir) {
      spawnSync(process.execPath, [MAIN, 'stop', 'web'], { env, timeout: 30_000 });
    }
    pool?.cleanup();
    if (stateDir) rmSync(stateDir, { recursive: true, force: true });
  });

  for (const mode of ['local', 'remote'] as const) {
    it(`${mode}: exec -it gives a prompt on a box tty; resize, Ctrl-C, exit code, terminal restored`, async () => {
      // The CLI runs under a shell so the test can look at the terminal after it exits.
      const term = terminal(['/bin/sh', '-c', `${process.execPath} ${MAIN} exec -it web sh; echo "cli=$?"; stty -a; exit 0`], mode === 'local' ? env : remoteEnv);
      await term.waitFor(/# /);
      term.pty.write('tty; stty size\r');
      await term.waitFor(/\/dev\/pts\/\d+\r*\n30 100/);
      term.pty.resize(120, 40);
      await new Promise((r) => setTimeout(r, 300));
      term.pty.write('stty size\r');
      await term.waitFor(/40 120/);
      term.pty.write('sleep 100\r');
      await new Promise((r) => setTimeout(r, 400));
      term.pty.write('\x03');
      await term.waitFor(/\^C/);
      term.pty.write('echo "after=$?"\r');
      await term.waitFor(/after=130/);
      term.pty.write('exit 7\r');
      const out = await term.waitFor(/cli=\d+[\s\S]*icanon[\s\S]*echo/);
      assert.match(out, /cli=7/);
      // Raw mode is off again: canonical input, signals and echo are back on.
      const after = out.slice(out.indexOf('cli=7'));
      assert.match(after, /[^-]isig /);
      assert.match(after, /[^-]icanon /);
      assert.doesNotMatch(after, /-icanon|-isig|-echo /);
      assert.equal(await term.exited, 0);
    });

    it(`${mode}: console opens a login shell; shell is its alias; a stopped box says how to resume`, async () => {
      const e = mode === 'local' ? env : remoteEnv;
      const term = terminal([process.execPath, MAIN, 'console', 'web'], e);
      await term.waitFor(/# /);
      term.pty.write('echo "login=$0"; exit 3\r');
      await term.waitFor(/login=-?sh/);
      assert.equal(await term.exited, 3);
      const alias = terminal([process.execPath, MAIN, 'shell', 'web'], e);
      await alias.waitFor(/# /);
      alias.pty.write('exit\r');
      assert.equal(await alias.exited, 0);
    });
  }

  it('-t without a terminal is refused as docker does; a stopped box says how to resume', async () => {
    const r = zomg(['exec', '-it', 'web', 'sh'], {}, 'echo hi\n');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /error: the input device is not a TTY/);
    assert.equal(zomg(['create', 'off', '--base', 'bb']).code, 0);
    assert.equal(zomg(['stop', 'off']).code, 0);
    const term = terminal([process.execPath, MAIN, 'console', 'off'], env);
    assert.equal(await term.exited, 1);
    assert.match(await term.waitFor(/hint/), /is stopped[\s\S]*zomg resume/);
  });

  it('cp copies a tree in and out in both modes (rsync sees no difference); - is a tar stream; clear errors', () => {
    const work = mkdtempSync(join(tmpdir(), 'zomg-cp-e2e-'));
    try {
      const src = join(work, 'tree');
      mkdirSync(join(src, 'priv'), { recursive: true });
      writeFileSync(join(src, 'a.txt'), 'hello\n');
      chownSync(join(src, 'a.txt'), 1000, 1000);
      utimesSync(join(src, 'a.txt'), new Date('2020-01-02T03:04:05Z'), new Date('2020-01-02T03:04:05Z'));
      symlinkSync('a.txt', join(src, 'link'));
      chmodSync(join(src, 'priv'), 0o700);
      writeFileSync(join(src, 'priv', 'secret'), 's\n');
      // ACLs (by numeric id, no such user on the host) and an xattr travel too.
      execFileSync('setfacl', ['-m', 'u:4321:rw', join(src, 'a.txt')]);
      execFileSync('setfacl', ['-d', '-m', 'u:4321:rwx', join(src, 'priv')]);
      execFileSync('setfattr', ['-n', 'user.note', '-v', 'kept', join(src, 'priv', 'secret')]);
      for (const [mode, extra] of [['local', {}], ['remote', remoteEnv]] as const) {
        const into = `web:/srv-${mode}`;
        const mk = zomg(['exec', 'web', '--', 'mkdir', '-p', `/srv-${mode}`], extra);
        assert.equal(mk.code, 0, mk.stderr);
        const up = zomg(['cp', src, into], extra);
        assert.equal(up.code, 0, up.stderr);
        const out = join(work, `out-${mode}`);
        mkdirSync(out);
        const down = zomg(['cp', `${into}/tree`, out], extra);
        assert.equal(down.code, 0, down.stderr);
        assert.equal(execFileSync('rsync', ['-rlpgoDtAXn', '--numeric-ids', '-i', `${src}/`, `${out}/tree/`], { encoding: 'utf8' }), '');
        assert.match(execFileSync('getfacl', ['-n', '-p', join(out, 'tree', 'a.txt')], { encoding: 'utf8' }), /user:4321:rw-/);
        assert.match(execFileSync('getfacl', ['-n', '-p', join(out, 'tree', 'priv')], { encoding: 'utf8' }), /default:user:4321:rwx/);
        assert.match(execFileSync('getfattr', ['-n', 'user.note', join(out, 'tree', 'priv', 'secret')], { encoding: 'utf8' }), /kept/);
        // Under a new name, and as a tar stream on stdout.
        assert.equal(zomg(['cp', `${into}/tree/a.txt`, join(out, 'renamed.txt')], extra).code, 0);
        assert.equal(readFileSync(join(out, 'renamed.txt'), 'utf8'), 'hello\n');
        const tar = zomg(['cp', `${into}/tree`, '-'], extra);
        const names = execFileSync('tar', ['-t', '-f', '-'], { input: tar.stdoutRaw, encoding: 'utf8' }).split('\n').filter(Boolean).sort();
        assert.deepEqual(names, ['tree/', 'tree/a.txt', 'tree/link', 'tree/priv/', 'tree/priv/secret']);
        // - on stdin: a tar stream extracted into a directory.
        const stdinCopy = zomg(['cp', '-', 'web:/tmp'], extra, execFileSync('tar', ['-c', '-f', '-', '-C', work, 'tree']));
        assert.equal(stdinCopy.code, 0, stdinCopy.stderr);
        assert.equal(zomg(['exec', 'web', '--', 'cat', '/tmp/tree/a.txt'], extra).stdout, 'hello\n');

        const missing = zomg(['cp', 'web:/no/such', out], extra);
        assert.equal(missing.code, 1);
        assert.match(missing.stderr, /error: no such file or directory in the box: "\/no\/such"/);
        assert.match(zomg(['cp', 'web:/../etc', out], extra).stderr, /leaves the box's root/);
        assert.match(zomg(['cp', src, 'web:/etc/passwd'], extra).stderr, /cannot copy a directory over the file/);
        assert.match(zomg(['cp', src, 'nobox:/tmp'], extra).stderr, /box "proj:nobox" not found/);
        assert.match(zomg(['cp', join(work, 'nope'), 'web:/tmp'], extra).stderr, /no such file or directory: /);
      }
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });

  it('ps lists the box processes; ps -- ARGS runs the box ps; logs prints and follows a --bg exec', () => {
    const bg = zomg(['exec', 'web', '--bg', '--', 'sh', '-c', 'for i in 1 2 3; do echo n$i; sleep 1; done']);
    assert.equal(bg.code, 0, bg.stderr);
    const pid = bg.stdout.trim();
    for (const extra of [{}, remoteEnv]) {
      const ps = zomg(['ps', 'web'], extra);
      assert.match(ps.stdout, /^PID\s+USER\s+TIME\s+COMMAND\n1\s+root\s+\d+:\d\d\s+/);
      assert.match(ps.stdout, new RegExp(`\\n${pid}\\s+root\\s+\\S+\\s+sh -c for i`));
    }
    assert.match(zomg(['ps', 'web', '--', 'ww']).stdout, /PID\s+USER/);
    assert.equal(zomg(['logs', 'web', '--pid', pid, '-f']).stdout, 'n1\nn2\nn3\n');
    assert.equal(zomg(['logs', 'web', '--pid', pid, '-l', '1'], remoteEnv).stdout, 'n3\n');
    const notBg = zomg(['logs', 'web', '--pid', '1'], remoteEnv);
    assert.equal(notBg.code, 1);
    assert.match(notBg.stderr, /process 1 in the box is not a background exec/);
    assert.match(zomg(['logs', 'web']).stderr, /--pid is required/);
  });
});
