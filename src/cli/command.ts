/** The shape of a CLI command declared as data in the registry. */
import type { ProjectName } from '../core/names.js';
import type { BoxRef } from '../core/refs.js';
import type { ZomgService } from '../core/service.js';
import type { ProgressFn } from '../core/types.js';
import type { GlobalFlags, Target } from './settings.js';

export interface OptionSpec {
  flags: string;
  description: string;
  /** Collect every occurrence into an array. */
  repeatable?: boolean;
}

export interface RunContext {
  flags: GlobalFlags;
  target(): Target;
  client(): Promise<ZomgService>;
  project(): ProjectName;
  /** Parses a box ref (`name`, `project:name`, `project.name`, `.`). */
  box(value: string): BoxRef;
  progress: ProgressFn;
  /**
   * Says that what is left of the command is a short burst of many small functions (a diff
   * of a few thousand paths, found by the trees' items, prints them in a fraction of a
   * second): with a local engine, V8's optimizing compiler then waits longer before it
   * compiles one of them (cli/launcher.ts `deferOptimization`).
   */
  burst(): void;
}

/** What a command returns: the data (printed as JSON with --json) and its human rendering. */
export interface Output {
  data: unknown;
  text: string;
  /** The process exit code when it is not 0 on success (exec passes the command's through). */
  exitCode?: number;
  /** Nothing to print (the command already streamed its output). */
  silent?: boolean;
  /** Said on stderr before the result (not with --json): what was compared, what failed of several. */
  stderr?: string;
}

export interface CommandSpec {
  path: string[];
  summary: string;
  args?: string[];
  options?: OptionSpec[];
  /** Accepts -p/--project. */
  project?: boolean;
  /** Accepts --url/--profile/--state-dir (talks to an engine). Default true. */
  engine?: boolean;
  hidden?: boolean;
  /**
   * When the local engine repairs crash leftovers at open: `if-needed` (default: only when a
   * crash left evidence), `always` (the server), `never` (background workers).
   */
  reconcile?: 'always' | 'if-needed' | 'never';
  /**
   * False for a command nobody waits for to start (the server, a background worker): its code
   * stays out of the launcher's code cache, which every other start reads (cli/launcher.ts).
   */
  codeCache?: boolean;
  /**
   * The last argument is a command line (exec): everything from the first word after the
   * other arguments is passed through untouched, its options included.
   */
  passThrough?: boolean;
  run(ctx: RunContext, args: string[], opts: Record<string, unknown>): Promise<Output | undefined>;
}
