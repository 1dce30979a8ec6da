/**
 * The CLI as a user reads it, through the built bundle, locally and against a real
 * `zomg serve` on loopback: global options anywhere, exec's pass-through, messages and
 * hints, several boxes at once, --json everywhere, completion, progress, the request log.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { MAIN, type Served, startServe } from '../helpers/cli.js';
import { busyboxRootfsTar } from '../helpers/fixtures.js';
import { type TestPool, isRoot, makeTestPool } from '../helpers/pool.js';

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

const hasTool = (name: string): boolean => spawnSync('sh', ['-c', `command -v ${name}`]).status === 0;

describe('zomg CLI: how it reads (local and remote)', { skip: !isRoot() && 'needs root for btrfs' }, () => {
  let pool: TestPool;
  let stateDir: string;
  let server: Served | undefined;
  let url = '';
  let env: NodeJS.ProcessEnv;

  const zomg = (args: string[], extraEnv: NodeJS.ProcessEnv = {}, input?: string): Result => {
    const r = spawnSync(process.execPath, [MAIN, ...args], { env: { ...env, ...extraEnv }, encoding: 'utf8', timeout: 120_000, ...(input !== undefined ? { input } : {}) });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  const remote = (args: string[], input?: string): Result => zomg(args, { ZOMG_URL: url }, input);
  const modes: Array<[string, (args: string[], input?: string) => Result]> = [
    ['local', (args, input) => zomg(args, {}, input)],
    ['remote', remote],
  ];

  before(async () => {
    pool = makeTestPool(1024);
    stateDir = mkdtempSync(join(tmpdir(), 'zomg-e2e-ux-'));
    env = { ...process.env, ZOMG_HOME: stateDir, ZOMG_POOL_PATH: pool.mnt, ZOMG_NO_SIZE_WORKER: '1' };
    for (const key of ['ZOMG_PROJECT', 'ZOMG_URL', 'ZOMG_API_URL', 'ZOMG_PROFILE', 'ZOMG_TOKEN', 'ZOMG_SETUP_DIR']) delete env[key];
    server = await startServe(env);
    url = server.url;
    const imported = zomg(['base', 'import', 'bb', '--file', busyboxRootfsTar()]);
    assert.equal(imported.code, 0, imported.stderr);
    const created = zomg(['create', 'web', '--base', 'bb', '-p', 'ux']);
    assert.equal(created.code, 0, created.stderr);
  });

  after(async () => {
    for (const project of ['ux', 'sa']) zomg(['stop', '--all', '-p', project]);
    await server?.stop();
    pool?.cleanup();
    if (stateDir) rmSync(stateDir, { recursive: true, force: true });
  });

  it("prints zomg's version for -V/--version alone, and lets `base delete --version V` delete V", () => {
    assert.equal(zomg(['--version']).stdout, '0.1.0\n');
    assert.equal(zomg(['-V']).stdout, '0.1.0\n');
    // A second import moves the alias on: the first version can go.
    assert.equal(zomg(['base', 'import', 'bb', '--file', busyboxRootfsTar()]).code, 0);
    const deleted = zomg(['base', 'delete', '--version', 'bb']);
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.equal(deleted.stdout, 'Deleted version bb\n');
    assert.doesNotMatch(zomg(['base', 'inspect', 'bb']).stdout, /^bb\s/m);
    const again = remote(['base', 'delete', '--version', 'bb']);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /^error: base "bb" has no version "bb"\nhint: /);
  });

  it('accepts global options before or after the command', () => {
    const after_ = zomg(['list', '-q', '-p', 'ux', '--url', url]);
    assert.equal(after_.code, 0, after_.stderr);
    assert.equal(after_.stdout, 'web\n');
    assert.equal(zomg(['--url', url, '-p', 'ux', 'list', '-q']).stdout, 'web\n');
    assert.equal(zomg(['--project', 'ux', '--json', 'list']).stdout, zomg(['list', '--json', '--project', 'ux']).stdout);
    assert.equal(JSON.parse(zomg(['-j', 'base', 'list']).stdout)[0].name, 'bb');
    assert.equal(JSON.parse(zomg(['base', '--json', 'list']).stdout)[0].name, 'bb');
    assert.equal(zomg(['--state-dir', stateDir, 'info', 'ux:web']).code, 0);
    const token = readFileSync(join(stateDir, 'token'), 'utf8').trim();
    assert.equal(zomg(['--url', url, '--token', token, 'list', '-q', '-a'], { ZOMG_HOME: '/nonexistent' }).stdout, 'ux:web\n');
  });

  it('passes everything after the box to exec, and says to use -- for an unknown option', () => {
    for (const [mode, run] of modes) {
      const ls = run(['exec', 'ux:web', 'ls', '-la', '/']);
      assert.equal(ls.code, 0, `${mode}: ${ls.stderr}`);
      assert.match(ls.stdout, /^d.* bin$/m, mode);
      assert.equal(run(['exec', 'ux:web', '--env', 'A=1', 'sh', '-c', 'echo $A "$@"', 'x', '--help']).stdout, '1 --help\n', mode);
      const unknown = run(['exec', 'ux:web', '-la']);
      assert.equal(unknown.code, 2, mode);
      assert.match(unknown.stderr, /^error: unknown option '-la' for `zomg exec`\nhint: .*zomg exec <box> -- CMD -la/, mode);
    }
  });

  it('says a missing command the same way locally and remotely, exit 127', () => {
    for (const [mode, run] of modes) {
      const r = run(['exec', 'ux:web', 'hello']);
      assert.equal(r.code, 127, mode);
      assert.equal(r.stderr, 'zomg: command not found in box web: hello\n', mode);
      assert.equal(r.stdout, '', mode);
      assert.equal(run(['exec', 'ux:web', '--', '/no/such/path']).stderr, 'zomg: command not found in box web: /no/such/path\n', mode);
      // Through a shell, the shell's own words stand.
      assert.equal(run(['exec', 'ux:web', '--sh', 'nosuchcmd']).code, 127, mode);
    }
  });

  it('exec --json buffers {exit_code, stdout, stderr} and keeps the exit code', () => {
    for (const [mode, run] of modes) {
      const r = run(['exec', 'ux:web', '--json', 'sh', '-c', 'cat; echo oops >&2; exit 3'], 'in\n');
      assert.equal(r.code, 3, mode);
      assert.deepEqual(JSON.parse(r.stdout), { exit_code: 3, stdout: 'in\n', stderr: 'oops\n' }, mode);
      assert.equal(r.stderr, '', mode);
    }
  });

  it('says what a fork forked and what a diff compared against (on stderr)', () => {
    assert.equal(zomg(['create', 'copy', '--fork', 'web', '-p', 'ux']).stdout, 'Created box ux:copy as a fork of ux:web\n');
    assert.equal(remote(['create', 'copy2', '--fork', 'ux:web', '-p', 'ux']).stdout, 'Created box ux:copy2 as a fork of ux:web\n');
    assert.equal(zomg(['snapshot', 'create', 'ux:copy']).code, 0);
    assert.equal(zomg(['exec', 'ux:copy', 'touch', '/new-file']).code, 0);
    for (const [mode, run] of modes) {
      const d = run(['diff', 'status', 'ux:copy']);
      assert.equal(d.code, 0, d.stderr);
      assert.equal(d.stdout, '+ /new-file\n', mode);
      assert.equal(d.stderr, 'Compared against snapshot v0 of ux:copy\n', mode);
      const asJson = run(['diff', 'status', 'ux:copy', '--json']);
      assert.equal(asJson.stderr, '', mode);
      assert.equal(JSON.parse(asJson.stdout).against, 'v0', mode);
    }
  });

  it('deletes several boxes at once, reporting each, exit 1 if any failed', () => {
    const r = zomg(['delete', '-p', 'ux', 'copy', 'nope', 'copy2']);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, 'Deleted box ux:copy\nDeleted box ux:copy2\n');
    assert.equal(r.stderr, 'error: box "ux:nope" not found\nhint: run `zomg list` to see your boxes\n');
    assert.equal(zomg(['create', 'a', '--base', 'bb', '-p', 'ux']).code, 0);
    const j = remote(['delete', '--json', 'ux:a', 'ux:nope']);
    assert.equal(j.code, 1);
    assert.deepEqual(JSON.parse(j.stdout), [
      { box: 'ux:a', deleted: true },
      { box: 'ux:nope', deleted: false, error: { code: 'ZOMG_BOX_NOT_FOUND', message: 'box "ux:nope" not found', hint: 'run `zomg list` to see your boxes' } },
    ]);
    assert.equal(zomg(['list', '-q', '-p', 'ux']).stdout, 'web\n');
  });

  it("stops a project's running boxes with stop --all", () => {
    for (const name of ['one', 'two']) assert.equal(zomg(['create', name, '--base', 'bb', '-p', 'sa']).code, 0);
    assert.equal(zomg(['stop', '--all', '-p', 'sa']).stdout, 'Stopped sa:one\nStopped sa:two\n');
    assert.equal(remote(['stop', '-a', '-p', 'sa']).stdout, 'No running boxes in project sa\n');
    assert.match(zomg(['list', '-p', 'ux']).stdout, /web\s+running/, 'other projects are left alone');
    const both = zomg(['stop', 'sa:one', '--all']);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /^error: pass a box or --all, not both\nhint: /);
    assert.equal(remote(['resume', 'sa:one']).code, 0);
    assert.deepEqual(JSON.parse(remote(['stop', '--all', '-p', 'sa', '--json']).stdout).map((r: { box: { name: string } }) => r.box.name), ['one']);
  });

  it('hints --token / ZOMG_TOKEN / a profile, not HTTP, when the server wants a token', () => {
    const r = zomg(['list'], { ZOMG_URL: url, ZOMG_HOME: '/nonexistent' });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^error: missing bearer token\nhint: pass --token <token> or set ZOMG_TOKEN .*zomg config set profile/);
    assert.doesNotMatch(r.stderr, /Authorization/);
    const bad = zomg(['exec', 'ux:web', 'true'], { ZOMG_URL: url, ZOMG_TOKEN: 'wrong-token-wrong-token' });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^error: invalid bearer token\nhint: pass --token/);
  });

  it('says which port is taken when serve cannot listen, with a --listen hint', () => {
    const port = new URL(url).port;
    const r = zomg(['serve', '--listen', `127.0.0.1:${port}`]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`^error: cannot listen on 127\\.0\\.0\\.1:${port}: port ${port} is already in use\\nhint: .*--listen 127\\.0\\.0\\.1:\\d+`));
    assert.doesNotMatch(r.stderr, /internal error|EADDRINUSE/);
  });

  it('logs one line per request without query strings or tokens; --quiet silences it', async () => {
    const token = readFileSync(join(stateDir, 'token'), 'utf8').trim();
    const logged = await startServe(env);
    const quiet = await startServe(env, ['--quiet']);
    try {
      assert.equal(zomg(['diff', 'status', 'ux:web', '--against', 'v9'], { ZOMG_URL: logged.url }).code, 1);
      assert.equal(zomg(['list', '-p', 'ux'], { ZOMG_URL: logged.url }).code, 0);
      assert.equal(zomg(['list', '-p', 'ux'], { ZOMG_URL: quiet.url }).code, 0);
      // The server writes its line as the response closes: give its stderr a moment to arrive.
      for (let i = 0; i < 50 && !/^GET \/v1\/projects\/ux\/boxes 200 /m.test(logged.stderr()); i++) await sleep(100);
      await sleep(200);
      const log = logged.stderr();
      assert.match(log, /^GET \/v1\/projects\/ux\/boxes\/web\/diff 404 \d+\.\d ms$/m);
      assert.match(log, /^GET \/v1\/projects\/ux\/boxes 200 \d+\.\d ms$/m);
      assert.doesNotMatch(log, /against=|v9/);
      assert.ok(!log.includes(token));
      assert.doesNotMatch(quiet.stderr(), /^GET /m);
    } finally {
      await logged.stop();
      await quiet.stop();
    }
  });

  it('shows progress as plain lines off a terminal, a bar on one, and nothing with --json', () => {
    const plain = remote(['base', 'import', 'pr', '--file', busyboxRootfsTar()]);
    assert.equal(plain.code, 0, plain.stderr);
    assert.match(plain.stderr, /^upload \(\d+(\.\d)? (KiB|MiB)\)… \[\d+s\]$/m);
    assert.match(plain.stderr, /^upload: 100% \[\d+s\]$/m);
    assert.ok(!plain.stderr.includes('\r') && !plain.stderr.includes('\u001b'), 'no terminal control off a terminal');
    const quiet = remote(['base', 'import', 'pr', '--file', busyboxRootfsTar(), '--json']);
    assert.equal(quiet.code, 0, quiet.stderr);
    assert.equal(quiet.stderr, '');
    assert.equal(JSON.parse(quiet.stdout).alias, 'pr');
    if (hasTool('script')) {
      // A real terminal (a pty from util-linux script): the bar is drawn, then the stage is ticked off.
      const cmd = [process.execPath, MAIN, 'base', 'import', 'pr', '--file', busyboxRootfsTar()].map((a) => `'${a}'`).join(' ');
      const tty = spawnSync('script', ['-qec', cmd, '/dev/null'], { env: { ...env, ZOMG_URL: url, TERM: 'xterm' }, encoding: 'utf8', timeout: 60_000 });
      assert.equal(tty.status, 0, tty.stdout);
      assert.match(tty.stdout, /✓ upload \d+s/);
      assert.match(tty.stdout, /Imported pr-v\d{14} \(alias pr\)/);
    }
  });

  it('prints shell completion generated from the commands', () => {
    const bash = zomg(['completion', 'bash']);
    assert.equal(bash.code, 0, bash.stderr);
    const complete = (line: string): string[] => {
      const words = line.split(' ');
      const script = `${bash.stdout}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _zomg; printf '%s\\n' "\${COMPREPLY[@]}"`;
      const r = spawnSync('bash', ['-c', script], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      return r.stdout.trim().split('\n');
    };
    assert.deepEqual(complete('zomg ba'), ['base']);
    assert.deepEqual(complete('zomg base in'), ['inspect', 'install']);
    assert.ok(complete('zomg stop --').includes('--all'));
    assert.ok(complete('zomg exec web --').includes('--sh'));
    for (const shell of ['zsh', 'fish']) {
      const r = zomg(['completion', shell]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /zomg/);
      if (hasTool(shell)) assert.equal(spawnSync(shell, ['-n'], { input: r.stdout }).status, 0, `${shell} -n`);
    }
    const bad = zomg(['completion', 'tcsh']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^error: unknown shell "tcsh"\nhint: pass one of bash, zsh, fish/);
  });

  it('gives every parse error a hint', () => {
    const unknown = zomg(['lst']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /^error: unknown command 'lst'[\s\S]*hint: run `zomg --help`/);
    const opt = zomg(['list', '--bogus']);
    assert.equal(opt.code, 2);
    assert.match(opt.stderr, /^error: unknown option '--bogus'[\s\S]*\nhint: run `zomg list --help`/);
    const asJson = zomg(['list', '--bogus', '--json']);
    assert.equal(asJson.code, 2);
    assert.equal(asJson.stderr, '');
    assert.deepEqual(JSON.parse(asJson.stdout), { error: { code: 'ZOMG_USAGE', message: "unknown option '--bogus'", hint: 'run `zomg list --help` for its usage' } });
    const missing = zomg(['snapshot', 'create']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /missing required argument 'box'\nhint: run `zomg snapshot create --help`/);
  });
});
