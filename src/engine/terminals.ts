/**
 * Terminals, processes and logs of a running box: `zomg exec -t`, `zomg console`,
 * `zomg ps`, `zomg logs` (and their HTTP routes). The runtime does the work
 * (runtime/pty.ts, runtime/processes.ts); this file finds the box and says "stopped" the
 * way every other use case does.
 */
import { type BoxProcess, type ReadLogsOptions, type TerminalRequest, type TerminalSession, checkTerminalSize } from '../core/console-protocol.js';
import { InvalidArgumentError } from '../core/errors.js';
import { parseEnvAssignment } from '../core/names.js';
import type { BoxRef } from '../core/refs.js';
import { Writable } from 'node:stream';
import type { BoxRow } from '../db/boxes-repo.js';
import { runtimeBox } from './access.js';
import type { EngineContext } from './context.js';
import { EnterGuard, enterFailed } from './enter-guard.js';
import { imageWorkdir } from './image-config.js';
import { asStopped, baseConfigOf, runningRow } from './lifecycle.js';

/**
 * A login shell, whichever the box has: `bash -l` where bash is installed, else `sh -l`.
 * Decided in the box (its PATH, its files), so a symlink or a PATH entry counts as it does there.
 */
const LOGIN_SHELL = ['/bin/sh', '-c', 'if command -v bash >/dev/null 2>&1; then exec bash -l; fi; exec sh -l'];

/** The largest pid Linux hands out (pid_max's ceiling). */
const PID_MAX = 4_194_304;

/**
 * Opens a terminal in the running box: `request.command` (a login shell without one) on a
 * new pty of the given size. Throws `ZOMG_BOX_NOT_FOUND`, `ZOMG_BOX_STOPPED` (with the hint to
 * resume), `ZOMG_INVALID_TERMINAL_SIZE`, `ZOMG_UNKNOWN_USER`, `ZOMG_NO_SUCH_DIRECTORY`.
 */
export async function openTerminal(ctx: EngineContext, ref: BoxRef, request: TerminalRequest): Promise<TerminalSession> {
  checkTerminalSize(request.cols, request.rows);
  for (const [k, v] of Object.entries(request.env ?? {})) parseEnvAssignment(`${k}=${v}`);
  if (request.command !== undefined && request.command.length === 0) {
    throw new InvalidArgumentError('no command given', { code: 'ZOMG_NO_COMMAND', hint: 'omit the command for a login shell' });
  }
  const row = await runningRow(ctx, ref);
  const login = request.command === undefined;
  // A login shell starts in the user's home, as ssh does; a command where `exec` would run it.
  const box = runtimeBox(ctx, row);
  const cwd = request.cwd ?? (login ? undefined : imageWorkdir(baseConfigOf(ctx, row), box.root));
  try {
    return guardEntry(row, ctx.runtime.terminal(box, {
      command: request.command ?? LOGIN_SHELL,
      cols: request.cols,
      rows: request.rows,
      ...(request.env ? { env: request.env } : {}),
      ...(cwd !== undefined ? { cwd } : {}),
      ...(request.shell && !login ? { shell: true } : {}),
      ...(request.user !== undefined ? { user: request.user } : {}),
    }));
  } catch (err) {
    throw asStopped(row, err);
  }
}

/**
 * The session with its first output held until it is clear it is not the entry program's
 * failure (then `exited` rejects with `ZOMG_EXEC_FAILED`, as `exec` does); everything else
 * passes through as produced.
 */
function guardEntry(row: BoxRow, session: TerminalSession): TerminalSession {
  const listeners: Array<(chunk: Buffer) => void> = [];
  const guard = new EnterGuard(
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        for (const listener of listeners) listener(chunk);
        callback();
      },
    }),
  );
  let subscribed = false;
  const exited = session.exited.then(async (code) => {
    // Output the pty handed over together with the exit reaches the guard first.
    await new Promise<void>((resolve) => setImmediate(resolve));
    const failure = guard.enterFailure(code);
    if (failure !== undefined) throw enterFailed(row, failure);
    return code;
  });
  return {
    onData(listener) {
      listeners.push(listener);
      // Subscribed when the caller subscribes, as the session itself would be: no output is lost before.
      if (!subscribed) {
        subscribed = true;
        session.onData((chunk) => guard.write(chunk));
      }
    },
    write: (data) => session.write(data),
    resize: (cols, rows) => session.resize(cols, rows),
    close: () => session.close(),
    exited,
  };
}

/** The processes of the running box (`zomg ps`). Throws `ZOMG_BOX_NOT_FOUND`, `ZOMG_BOX_STOPPED`. */
export async function listProcesses(ctx: EngineContext, ref: BoxRef): Promise<BoxProcess[]> {
  const row = await runningRow(ctx, ref);
  try {
    return ctx.runtime.processes(runtimeBox(ctx, row));
  } catch (err) {
    throw asStopped(row, err);
  }
}

function checkPid(pid: number): number {
  if (!Number.isInteger(pid) || pid < 1 || pid > PID_MAX) {
    throw new InvalidArgumentError(`invalid pid "${String(pid)}"`, { code: 'ZOMG_INVALID_PID', hint: 'pass the pid `zomg exec --bg` printed' });
  }
  return pid;
}

/**
 * Writes the log of a `--bg` exec (`zomg logs --pid`) to `out`; with `follow`, until the
 * process ends. Throws `ZOMG_BOX_STOPPED`, `ZOMG_INVALID_PID`, `ZOMG_PROCESS_NOT_FOUND`,
 * `ZOMG_NOT_A_BACKGROUND_EXEC`.
 */
export async function readLogs(ctx: EngineContext, ref: BoxRef, pid: number, out: Writable, options: ReadLogsOptions = {}): Promise<void> {
  checkPid(pid);
  if (options.lines !== undefined && (!Number.isInteger(options.lines) || options.lines < 0)) {
    throw new InvalidArgumentError(`invalid line count "${String(options.lines)}"`, { code: 'ZOMG_INVALID_ARGUMENT', hint: 'pass a whole number of lines, 0 or more' });
  }
  const row = await runningRow(ctx, ref);
  try {
    await ctx.runtime.readLog(runtimeBox(ctx, row), pid, out, options);
  } catch (err) {
    throw asStopped(row, err);
  }
}
