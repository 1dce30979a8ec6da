/** An engine on its own small btrfs pool and state directory, torn down (unmounted, detached) by `cleanup`. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseBoxName, parseProjectName } from '../../src/core/names.js';
import { type Engine, type EngineOptions, createEngine } from '../../src/engine/engine.js';
import { type TestPool, makeTestPool } from './pool.js';

export interface TestEngine {
  engine: Engine;
  pool: TestPool;
  stateDir: string;
  /** Opens another engine on the same state (as a second process would). */
  reopen(extra?: Partial<EngineOptions>): Promise<Engine>;
  cleanup(): Promise<void>;
}

export async function makeTestEngine(extra: Partial<EngineOptions> = {}, poolSizeMb = 1024): Promise<TestEngine> {
  const pool = makeTestPool(poolSizeMb);
  const stateDir = mkdtempSync(join(tmpdir(), 'zomg-state-'));
  const opened: Engine[] = [];
  const open = async (more: Partial<EngineOptions> = {}): Promise<Engine> => {
    const e = await createEngine({ stateDir, poolPath: pool.mnt, onSizesPending: () => undefined, ...extra, ...more });
    opened.push(e);
    return e;
  };
  try {
    const engine = await open();
    return {
      engine,
      pool,
      stateDir,
      reopen: open,
      async cleanup() {
        // Running boxes hold the pool's mount in their namespaces: stop them before unmounting.
        for (const box of await engine.listBoxes().catch(() => [])) {
          if (box.status === 'running') await engine.stopBox({ project: parseProjectName(box.project), name: parseBoxName(box.name) }).catch(() => undefined);
        }
        for (const e of opened) await e.close().catch(() => undefined);
        pool.cleanup();
        rmSync(stateDir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    pool.cleanup();
    rmSync(stateDir, { recursive: true, force: true });
    throw err;
  }
}
