/**
 * A start killed half-way — after bwrap was spawned, before its init was recorded — must
 * not leave an init zomg cannot see: the next resume ends it and starts exactly one; a
 * delete ends it; a reconcile ends it.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { BoxName, ProjectName } from '../../src/core/names.js';
import { busyboxRootfsTar } from '../helpers/fixtures.js';
import { type TestEngine, makeTestEngine } from '../helpers/engine.js';
import { isRoot } from '../helpers/pool.js';

const ENGINE = fileURLToPath(new URL('../../src/engine/engine.js', import.meta.url));
const ref = (name: string) => ({ project: 'default' as ProjectName, name: name as BoxName });

/** Pid-namespace inodes of the processes whose root is `root`: one per init tree. */
function initTreesIn(root: string): Set<number> {
  const target = statSync(root);
  const trees = new Set<number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const st = statSync(`/proc/${entry}/root/`);
      if (st.dev === target.dev && st.ino === target.ino) trees.add(statSync(`/proc/${entry}/ns/pid`).ino);
    } catch {
      /* gone */
    }
  }
  return trees;
}

describe('engine: a start killed half-way', { skip: !isRoot() && 'needs root for btrfs and bwrap' }, () => {
  let t: TestEngine;
  const rootOf = async (name: string): Promise<string> => join(t.pool.mnt, 'roots', (await t.engine.getBox(ref(name))).id);

  /** Resumes the box in another process that SIGKILLs itself right after spawning bwrap. */
  const killedResume = (name: string): void => {
    const script = join(t.stateDir, 'killed-resume.mjs');
    writeFileSync(
      script,
      `import { createEngine } from ${JSON.stringify(ENGINE)};
const e = await createEngine({ stateDir: ${JSON.stringify(t.stateDir)}, poolPath: ${JSON.stringify(t.pool.mnt)}, reconcile: 'never', onSizesPending() {},
  faultPoint(step) { if (step === 'start:spawned') process.kill(process.pid, 'SIGKILL'); } });
await e.resumeBox({ project: 'default', name: ${JSON.stringify(name)} });`,
    );
    const r = spawnSync(process.execPath, [script], { encoding: 'utf8' });
    assert.equal(r.signal, 'SIGKILL', r.stderr);
  };

  const waitForTree = async (root: string): Promise<void> => {
    for (let i = 0; i < 200 && initTreesIn(root).size === 0; i++) await new Promise((r) => setTimeout(r, 10));
  };

  before(async () => {
    t = await makeTestEngine();
    await t.engine.importBase('bb', busyboxRootfsTar());
  });
  after(async () => t?.cleanup());

  it('resume ends the unrecorded init and starts exactly one', async () => {
    await t.engine.createBox(ref('r'), { base: 'bb', start: false });
    const root = await rootOf('r');
    killedResume('r');
    await waitForTree(root);
    assert.equal(initTreesIn(root).size, 1, 'the killed start left an init behind (the case to repair)');
    assert.equal((await t.engine.resumeBox(ref('r'))).box.status, 'running');
    assert.equal(initTreesIn(root).size, 1, 'exactly one init runs the box');
    await t.engine.stopBox(ref('r'));
    assert.equal(initTreesIn(root).size, 0);
  });

  it('delete ends it', async () => {
    await t.engine.createBox(ref('d'), { base: 'bb', start: false });
    const root = await rootOf('d');
    const rootStat = statSync(root);
    killedResume('d');
    await waitForTree(root);
    await t.engine.deleteBox(ref('d'));
    // Nothing runs on the deleted root any more (compared by the root's identity).
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const st = statSync(`/proc/${entry}/root/`);
        assert.ok(!(st.dev === rootStat.dev && st.ino === rootStat.ino), `process ${entry} (${readFileSync(`/proc/${entry}/comm`, 'utf8').trim()}) still runs on the deleted root`);
      } catch (err) {
        if (err instanceof assert.AssertionError) throw err;
      }
    }
  });

  it('the reconciler ends it (the crash left evidence)', async () => {
    await t.engine.createBox(ref('c'), { base: 'bb', start: false });
    const root = await rootOf('c');
    killedResume('c');
    await waitForTree(root);
    assert.equal(t.engine.reconcileNeeded(), true, 'a dead mutation left its shared-lock file');
    const report = await t.engine.reconcile();
    assert.equal(report?.stoppedStrays, 1);
    assert.equal(initTreesIn(root).size, 0);
    assert.equal(t.engine.reconcileNeeded(), false);
  });
});
