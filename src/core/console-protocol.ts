/**
 * Terminals, files, processes and logs of a box: the types the engine, the HTTP API and the
 * remote CLI share, and the console protocol over a WebSocket
 * (`GET …/boxes/{name}/console`):
 *
 * 1. the request rides in the query (`cols`, `rows`, `command` repeatable, `user`, `cwd`) or,
 *    when the query has no `cols`, in the client's first text frame as JSON
 *    `TerminalRequest` (`{cols, rows, command?, user?, cwd?, env?, shell?}`);
 * 2. bytes flow both ways as binary frames (the pty's input and output, raw: Ctrl-C is the
 *    byte 0x03, the line discipline in the box turns it into SIGINT);
 * 3. the client may send the text frame `{"type":"resize","cols":C,"rows":R}` at any time;
 * 4. the server ends with a text frame `{"type":"exit","exit_code":N}` or
 *    `{"type":"error", statusCode, code, message, hint?}` and closes. A client closing the
 *    socket hangs up the terminal (the job gets SIGHUP, as when an ssh connection drops).
 */
import { InvalidArgumentError } from './errors.js';

/** What to run on a terminal in a box. Without `command`, a login shell (`bash -l`, else `sh -l`). */
export interface TerminalRequest {
  command?: string[];
  user?: string;
  cwd?: string;
  env?: Record<string, string>;
  /** Run `command` through `/bin/sh -c`. */
  shell?: boolean;
  cols: number;
  rows: number;
}

/** A live terminal in a box: the engine's pty, or the remote client's WebSocket. */
export interface TerminalSession {
  /** Output of the terminal, as produced. */
  onData(listener: (chunk: Buffer) => void): void;
  /** Input to the terminal (keystrokes, pasted text). */
  write(data: Buffer | string): void;
  /** A new window size (checked with `checkTerminalSize`). */
  resize(cols: number, rows: number): void;
  /** Hangs up: the job gets SIGHUP, `exited` settles. */
  close(): void;
  /** The job's exit code (128+N for signal N); rejects when the session broke. */
  readonly exited: Promise<number>;
}

export type ConsoleServerMessage =
  | { type: 'exit'; exit_code: number }
  | { type: 'error'; statusCode: number; code: string; message: string; hint?: string };

/** Bounds of a window size: what a real terminal can be, with room to spare. */
const TERMINAL_MAX_COLS = 4096;
const TERMINAL_MAX_ROWS = 4096;
export const TERMINAL_DEFAULT = { cols: 80, rows: 24 } as const;

/** Refuses a window size no terminal has (0, negative, fractional, absurdly large). */
export function checkTerminalSize(cols: unknown, rows: unknown): { cols: number; rows: number } {
  const ok = (v: unknown, max: number): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= max;
  if (!ok(cols, TERMINAL_MAX_COLS) || !ok(rows, TERMINAL_MAX_ROWS)) {
    throw new InvalidArgumentError(`invalid terminal size ${String(cols)}x${String(rows)}`, {
      code: 'ZOMG_INVALID_TERMINAL_SIZE',
      hint: `columns and rows are whole numbers from 1 to ${TERMINAL_MAX_COLS}`,
    });
  }
  return { cols, rows };
}

/** One process of a box, as `zomg ps` shows it. */
export interface BoxProcess {
  /** The pid inside the box's PID namespace. */
  pid: number;
  ppid: number;
  /** Name from the box's /etc/passwd, else the numeric uid. */
  user: string;
  /** CPU time (user + system) in seconds. */
  cpu_seconds: number;
  /** The command line (or `[name]` when it has none). */
  command: string;
}

export interface ReadLogsOptions {
  /** Only the last `lines` lines (default: all). */
  lines?: number;
  /** Keep streaming new output until the process ends. */
  follow?: boolean;
  signal?: AbortSignal;
}

export interface CopyToBoxOptions {
  /**
   * `path` must be an existing directory and the archive is extracted into it as it is (a
   * `-` tar stream). Without it, an existing directory receives the archive's top entry
   * under its own name; any other path names the copy (its parent must be a directory).
   */
  into?: boolean;
  signal?: AbortSignal;
}
