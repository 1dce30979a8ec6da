/**
 * A command that does not exist in the box, said the same way whatever runs it: nsenter's
 * own words (`nsenter: failed to execute hello: …`) name a host tool the user never called.
 * argv[0] is resolved as execvp(3) would, against the exec's PATH, inside the box's root;
 * a missing one ends the exec with 127 and `zomg: command not found in box <box>: <cmd>`.
 */
import { writeSync } from 'node:fs';
import { posix } from 'node:path';
import { PassThrough, Stream, Writable } from 'node:stream';
import { resolveInRoot } from '../system/rootpath.js';
import type { ExecHandle, ExecStdio } from './sandbox.js';

const COMMAND_NOT_FOUND_EXIT = 127;

/** Whether `command` names something in the box that exec could run (a directory cannot be). */
export function commandExists(boxRoot: string, command: string, path: string, cwd: string): boolean {
  const exists = (candidate: string): boolean => {
    const { stat } = resolveInRoot(boxRoot, posix.isAbsolute(candidate) ? candidate : posix.join(cwd, candidate));
    return stat !== undefined && !stat.isDirectory();
  };
  if (command.includes('/')) return exists(command);
  // An empty PATH entry means the working directory, as for execvp.
  return path.split(':').some((dir) => exists(posix.join(dir === '' ? cwd : dir, command)));
}

export const commandNotFoundMessage = (box: string, command: string): string => `zomg: command not found in box ${box}: ${command}`;

/** The handle of an exec that never started: its stderr says why, it has exited 127. */
export function commandNotFound(box: string, command: string, stdio: { stdout: ExecStdio; stderr: ExecStdio }): ExecHandle {
  const message = `${commandNotFoundMessage(box, command)}\n`;
  const slot = (kind: ExecStdio, text: string): PassThrough | null => {
    if (kind === 'pipe') {
      const stream = new PassThrough();
      stream.end(text);
      return stream;
    }
    if (text === '' || kind === 'ignore') return null;
    if (kind === 'inherit') process.stderr.write(text);
    else if (typeof kind === 'number') writeSync(kind, text);
    else if (kind instanceof Writable) kind.write(text);
    else if (kind instanceof Stream) (kind as unknown as NodeJS.WritableStream).write(text);
    return null;
  };
  const stdout = slot(stdio.stdout, '');
  const stderr = slot(stdio.stderr, message);
  // As for a child process, the exit is reported once its output has been read to the end.
  const drained = (s: PassThrough | null): Promise<void> => (s === null ? Promise.resolve() : new Promise((resolve) => s.once('end', resolve)));
  return {
    pid: -1,
    stdin: new Writable({ write: (_chunk, _enc, cb) => cb() }),
    stdout,
    stderr,
    exited: Promise.all([drained(stdout), drained(stderr)]).then(() => COMMAND_NOT_FOUND_EXIT),
    kill: () => undefined,
  };
}
