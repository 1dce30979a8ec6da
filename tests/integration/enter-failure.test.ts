/**
 * When the entry program (zomg-enter) cannot enter the box, every way of running a command
 * says so the same way: `ZOMG_EXEC_FAILED`, "could not enter box …", never the entry
 * program's exit code or its message as if the command had printed it. Triggered for
 * real: the box's seccomp filter (which zomg-enter loads on every entry) is moved away.
 */
import assert from 'node:assert/strict';
import { renameSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import type { ZomgError } from '../../src/core/errors.js';
import type { BoxName, ProjectName } from '../../src/core/names.js';
import { type TestEngine, makeTestEngine } from '../helpers/engine.js';
import { busyboxRootfsTar } from '../helpers/fixtures.js';
import { isRoot } from '../helpers/pool.js';

const ref = { project: 'alpha' as ProjectName, name: 'guarded' as BoxName };
const entryFailed = (err: unknown): boolean => {
  const e = err as ZomgError;
  assert.equal(e.code, 'ZOMG_EXEC_FAILED');
  assert.match(e.message, /^could not enter box "alpha:guarded": reading the seccomp filter/);
  assert.doesNotMatch(e.message, /\/proc\/\d/);
  return true;
};

describe('entry failures: exec, exec -t (terminal) and exec --bg alike', { skip: !isRoot() && 'needs root for btrfs' }, () => {
  let t: TestEngine;
  let filter: string;

  const exec = async (command: string[]): Promise<{ code: number; stdout: string; stderr: string }> => {
    let stdout = '';
    let stderr = '';
    const sink = (fn: (s: string) => void) => new Writable({ write: (c: Buffer, _e, cb) => (fn(c.toString()), cb()) });
    const { exit_code } = await t.engine.exec(ref, { command }, { stdout: sink((s) => (stdout += s)), stderr: sink((s) => (stderr += s)) });
    return { code: exit_code, stdout, stderr };
  };
  const terminal = async (command: string[]): Promise<{ exited: Promise<number>; output(): string }> => {
    const session = await t.engine.openTerminal(ref, { command, cols: 80, rows: 24 });
    let out = '';
    session.onData((chunk) => (out += chunk.toString('utf8')));
    return { exited: session.exited, output: () => out };
  };

  before(async () => {
    t = await makeTestEngine();
    await t.engine.importBase('bb', busyboxRootfsTar());
    const box = await t.engine.createBox(ref, { base: 'bb' });
    assert.equal(box.status, 'running');
    filter = join(t.stateDir, 'run', 'boxes', box.id, 'seccomp.bpf');
  });
  after(async () => t?.cleanup());

  it('runs normally with the entry program intact', async () => {
    assert.deepEqual(await exec(['sh', '-c', 'echo out; echo err >&2; exit 3']), { code: 3, stdout: 'out\n', stderr: 'err\n' });
    const term = await terminal(['sh', '-c', 'echo on-the-terminal; exit 4']);
    assert.equal(await term.exited, 4);
    assert.match(term.output(), /on-the-terminal/);
    const bg = await t.engine.execBackground(ref, { command: ['true'] });
    assert.ok(bg.pid > 0);
  });

  it('reports the entry failure as ZOMG_EXEC_FAILED on each path', async () => {
    renameSync(filter, `${filter}.aside`);
    try {
      await assert.rejects(exec(['true']), entryFailed);
      const term = await terminal(['true']);
      await assert.rejects(term.exited, entryFailed);
      assert.doesNotMatch(term.output(), /zomg-enter/, 'the entry program\'s message is not shown as terminal output');
      await assert.rejects(t.engine.execBackground(ref, { command: ['true'] }), entryFailed);
    } finally {
      renameSync(`${filter}.aside`, filter);
    }
    // And the box is fine again once it can be entered.
    assert.equal((await exec(['true'])).code, 0);
    assert.equal(await (await terminal(['true'])).exited, 0);
  });

  it("leaves a command's own output on the terminal untouched, its exit code too", async () => {
    const term = await terminal(['sh', '-c', 'echo "zomg-enter? no, the command"; exit 125']);
    assert.equal(await term.exited, 125);
    assert.match(term.output(), /zomg-enter\? no, the command/);
  });
});
