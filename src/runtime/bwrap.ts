/** The bwrap runtime: `BoxRuntime` over runtime/sandbox.ts, with its state under `<stateDir>/run/boxes/<id>`. */
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { isErrno } from '../system/fs.js';
import type { BoxRuntime, RuntimeBox, StartSpec } from './runtime.js';
import { type ExecOptions, boxStatus, execBackground, execInBox, isRunning, killProcessesRootedAt, killStuckSandboxes, reapStray, startBox, stopBox } from './sandbox.js';

export class BwrapRuntime implements BoxRuntime {
  readonly name = 'bwrap';
  private readonly runRoot: string;

  constructor(stateDir: string) {
    this.runRoot = join(stateDir, 'run', 'boxes');
  }

  private runDir(id: string): string {
    return join(this.runRoot, id);
  }

  async start(spec: StartSpec): Promise<void> {
    await startBox({ ...spec, runDir: this.runDir(spec.id) });
  }

  stop(box: RuntimeBox): Promise<'stopped' | 'not_running'> {
    return stopBox(this.runDir(box.id));
  }

  status(box: RuntimeBox): Promise<'running' | 'stopped'> {
    return boxStatus(this.runDir(box.id), box.root);
  }

  exec(box: RuntimeBox, options: ExecOptions) {
    return execInBox(this.runDir(box.id), options);
  }

  execDetached(box: RuntimeBox, options: Omit<ExecOptions, 'stdin' | 'stdout' | 'stderr' | 'signal'>) {
    return execBackground(this.runDir(box.id), options);
  }

  async remove(box: RuntimeBox): Promise<void> {
    await stopBox(this.runDir(box.id));
    await killProcessesRootedAt(box.root);
    rmSync(this.runDir(box.id), { recursive: true, force: true });
  }

  recover(box: RuntimeBox): Promise<boolean> {
    return reapStray(this.runDir(box.id));
  }

  /** Stops every init a start cut short left unrecorded (only when no start is in flight). */
  async recoverAll(): Promise<void> {
    for (const id of this.ids()) await reapStray(this.runDir(id));
  }

  /** Ends sandboxes stuck half-way that pin the pool mounted at `poolRoot`. */
  releasePool(poolRoot: string): Promise<number> {
    return killStuckSandboxes(poolRoot);
  }

  private ids(): string[] {
    try {
      return readdirSync(this.runRoot);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return [];
      throw err;
    }
  }

  runningIds(): string[] {
    let ids: string[];
    try {
      ids = readdirSync(this.runRoot);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return [];
      throw err;
    }
    return ids.filter((id) => isRunning(this.runDir(id)));
  }

  /** Run directories of boxes that no longer exist (`known` says which do). */
  pruneState(known: (id: string) => boolean): void {
    let ids: string[];
    try {
      ids = readdirSync(this.runRoot);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return;
      throw err;
    }
    for (const id of ids) if (!known(id) && !isRunning(this.runDir(id))) rmSync(this.runDir(id), { recursive: true, force: true });
  }
}
