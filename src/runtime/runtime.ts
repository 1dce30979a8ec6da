/**
 * The one interface the engine runs boxes through, like `StorageDriver` for the pool. The
 * bwrap runtime (runtime/bwrap.ts) implements it on this host; a Kubernetes runtime (one
 * box = one single-replica Deployment on the node that owns its pool, SPEC §11) would be a
 * second implementation. Boxes are addressed by id; the runtime keeps its own state.
 */
import type { Writable } from 'node:stream';
import type { BoxProcess, ReadLogsOptions, TerminalSession } from '../core/console-protocol.js';
import type { BoxConfig, PortForward } from '../core/types.js';
import type { PtyExecOptions } from './pty.js';
import type { BackgroundExec, BoxVolume, ExecHandle, ExecOptions } from './sandbox.js';

export type { BoxVolume } from './sandbox.js';

export interface RuntimeBox {
  /** The box's id (stable across renames of nothing: ids never change). */
  id: string;
  /** The box's root directory on the host. */
  root: string;
}

export interface StartSpec extends RuntimeBox {
  /** `<box>.<project>` */
  hostname: string;
  /** The complete injected environment (reserved variables and the user's). */
  env: Record<string, string>;
  /** System, project and data volumes, mounted in the box only. */
  volumes: BoxVolume[];
  /** Security profile and limits (default: the default profile, no limits). */
  config?: BoxConfig;
  /** Test hook: called between the steps of a start (crash injection). */
  fault?: (step: string) => void | Promise<void>;
}

export interface BoxRuntime {
  readonly name: string;
  /** Refuses ports a box may not publish (taken, out of range) before anything is made. */
  checkPublish(publish: PortForward[]): Promise<void>;
  /** Starts the box (idempotent while it runs on this root). */
  start(spec: StartSpec): Promise<void>;
  /** Stops every process of the box, including one a start cut short left unrecorded. */
  stop(box: RuntimeBox): Promise<'stopped' | 'not_running'>;
  /** Checked live against the host, never remembered. */
  status(box: RuntimeBox): Promise<'running' | 'stopped'>;
  /** Runs a command in the running box; returns at once with its streams. */
  exec(box: RuntimeBox, options: ExecOptions): ExecHandle;
  /** Runs a command detached in the running box. */
  execDetached(box: RuntimeBox, options: Omit<ExecOptions, 'stdin' | 'stdout' | 'stderr' | 'signal'>): Promise<BackgroundExec>;
  /** Runs a command in the running box on a new terminal (pty) of the given size. */
  terminal(box: RuntimeBox, options: PtyExecOptions): TerminalSession;
  /** The processes of the running box. */
  processes(box: RuntimeBox): BoxProcess[];
  /** Writes the log of a background exec to `out` (following it until it ends with `follow`). */
  readLog(box: RuntimeBox, pid: number, out: Writable, options?: ReadLogsOptions): Promise<void>;
  /** The host directory showing the running box as its processes see it (root plus mounts); undefined when stopped. */
  view(box: RuntimeBox): string | undefined;
  /** After `stop`, before the root is deleted: ends anything still holding the root and drops the runtime's state of the box. */
  remove(box: RuntimeBox): Promise<void>;
  /** Ids of the boxes whose init runs now (any pool of this state directory). */
  runningIds(): string[];
  /** Stops an init that a start cut short left unrecorded; true when there was one. Only called when no start is in flight. */
  recover(box: RuntimeBox): Promise<boolean>;
  /** Drops the runtime's state of boxes that no longer exist (`known` says which do) and do not run. */
  pruneState(known: (id: string) => boolean): void;
}
