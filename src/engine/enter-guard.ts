/**
 * "The entry program could not enter the box" told apart from the command's own failure,
 * for every way a command enters a box: `exec` (its stderr), `exec -t` and the console (the
 * terminal's output) and `exec --bg` (the starter's stderr). Such an exit is zomg's error
 * `ZOMG_EXEC_FAILED`, not the command's exit code.
 */
import { Writable } from 'node:stream';
import { ToolError } from '../core/errors.js';
import type { BoxRow } from '../db/boxes-repo.js';

/**
 * Passes the command's stderr through, except that it holds back a first line in which
 * the namespace-entering tool itself says it failed (before the command ran): such an exit
 * is zomg's failure to enter the box, not the command's exit code. Both entry programs
 * are known: `zomg-enter` (default boxes; exit 125) and `nsenter` (boxes started by an older
 * zomg; exit 1).
 */
export class EnterGuard extends Writable {
  private held: Buffer | undefined;
  private decided = false;
  /** The first bytes were the entry program's failure: everything is held until the exit code says. */
  private holding = false;

  constructor(private readonly target: Writable) {
    super();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (!this.decided || this.holding) {
      this.held = this.held ? Buffer.concat([this.held, chunk]) : chunk;
      if (this.holding && this.held.length <= MAX_ENTER_MESSAGE) return callback(); // the tool's message, to its end
      if (this.holding) {
        // Longer than any message of an entry program: the command's own output that merely
        // begins like one. Passed on, and no longer held (held, it would grow without end).
        this.holding = false;
        const out = this.held;
        this.held = undefined;
        return this.forward(out, callback);
      }
      const text = this.held.toString('utf8');
      if (ENTER_PREFIXES.some((p) => text.length < p.length && p.startsWith(text))) return callback();
      this.decided = true;
      if (enterTool(text) !== undefined) {
        this.holding = true;
        return callback();
      }
      const out = this.held;
      this.held = undefined;
      return this.forward(out, callback);
    }
    this.forward(chunk, callback);
  }

  private forward(chunk: Buffer, callback: (error?: Error | null) => void): void {
    if (this.target.write(chunk)) callback();
    else this.target.once('drain', () => callback());
  }

  /** The tool's own reason when the exec failed before the command ran; otherwise flushes what was held. */
  enterFailure(code: number): string | undefined {
    const failure = this.held === undefined ? undefined : entryFailure(this.held.toString('utf8'), code);
    if (failure !== undefined) return failure;
    if (this.held) this.target.write(this.held);
    this.held = undefined;
    return undefined;
  }
}

/** An entry program's failure is one short line; a longer "message" is the command's output. */
const MAX_ENTER_MESSAGE = 64 * 1024;

const ENTER_TOOLS = [
  // zomg-enter (runtime/enter.ts) says only its own failures this way, then exits 125.
  { prefix: 'zomg-enter: ', exitCode: 125, failure: /^zomg-enter: / },
  { prefix: 'nsenter: ', exitCode: 1, failure: /^nsenter: (cannot open|reassociate to namespace|neither filename nor target pid|failed to (change|set|read))/ },
];
const ENTER_PREFIXES = ENTER_TOOLS.map((t) => t.prefix);
const enterTool = (text: string): (typeof ENTER_TOOLS)[number] | undefined => ENTER_TOOLS.find((t) => t.failure.test(text));

/**
 * The entry program's reason when `text` (what was written first: stderr, or a terminal's
 * output) is its own failure message and `code` its failure exit code; else undefined.
 */
export function entryFailure(text: string, code: number): string | undefined {
  const tool = enterTool(text);
  if (tool === undefined || code !== tool.exitCode) return undefined;
  // A terminal ends lines with \r\n.
  return text.slice(tool.prefix.length).split(/\r?\n/)[0]?.replace(/\/proc\/\d+/g, '/proc/<init>');
}

/** The error of an exec whose entry program failed. */
export const enterFailed = (row: Pick<BoxRow, 'project' | 'name'>, failure: string): ToolError =>
  new ToolError('ZOMG_EXEC_FAILED', `could not enter box "${row.project}:${row.name}": ${failure}`, {
    hint: 'the box may have just been stopped or restarted; try again',
  });
