/**
 * The CLI's own output on file descriptors 1 and 2, written with write(2) rather than
 * through process.stdout and process.stderr: for a pipe or a socket Node makes those
 * net.Sockets, and loading net for them cost ~3 ms of every start whose output is piped (a
 * script's, a test's). Writes are whole and in order:
 * - a write that would block (EAGAIN: a non-blocking descriptor, shared with another
 *   process) hands what is left, and every later write, to the Node stream, which waits;
 * - a descriptor Node's own stream handles otherwise (closed, say) goes to that stream too;
 * - a reader that went away (EPIPE: `zomg diff status web | head`) throws
 *   OutputClosedError, which ends the command quietly (cli/main.ts), where Node's stream
 *   died of an unhandled error event with its stack trace. After a hand-over, the stream's
 *   error is caught: a waiter for 'drain' is released, and the next write throws.
 * What streams through Node's stream (exec's output, a terminal, progress) takes it with
 * `stream()`, and the descriptor's later writes follow it there; its errors stay theirs.
 */
import { writeSync } from 'node:fs';
import { isErrno } from '../system/fs.js';

/** The reader of the CLI's output is gone: nothing more can be said there. */
class OutputClosedError extends Error {
  constructor(options?: ErrorOptions) {
    super('the output was closed by its reader', options);
    this.name = 'OutputClosedError';
  }
}

/** True for OutputClosedError, also as the cause of another error (a diff's sink failed with it). */
export function isOutputClosed(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) if (e instanceof OutputClosedError) return true;
  return false;
}

/** True once the reader of the CLI's stdout or stderr went away (cli/main.ts: the exit status). */
export const outputClosed = (): boolean => stdout.closed || stderr.closed;

/** What DiffStatusWriter and the CLI write to: fds 1 and 2, or any Node stream. */
export interface TextOut {
  /** False when the text waits in a buffer: then wait for 'drain'. */
  write(text: string): boolean;
  once(event: 'drain', listener: () => void): unknown;
}

class FdOut implements TextOut {
  private node: NodeJS.WriteStream | undefined;
  /** The stream's error after a hand-over (its reader left, mostly). */
  private failed: Error | undefined;
  closed = false;

  constructor(
    private readonly fd: 1 | 2,
    private readonly nodeStream: () => NodeJS.WriteStream,
  ) {}

  write(text: string): boolean {
    if (this.failed) throw new OutputClosedError({ cause: this.failed });
    if (this.node) return this.node.write(text);
    let rest: Buffer;
    try {
      const n = writeSync(this.fd, text);
      if (n === Buffer.byteLength(text)) return true;
      // A short write (a pipe with less room than the text): go on from that byte.
      rest = Buffer.from(text, 'utf8').subarray(n);
    } catch (err) {
      return this.handOver(err, text);
    }
    while (rest.length > 0) {
      try {
        rest = rest.subarray(writeSync(this.fd, rest));
      } catch (err) {
        return this.handOver(err, rest);
      }
    }
    return true;
  }

  once(event: 'drain', listener: () => void): this {
    const stream = this.node;
    // Nothing waits in a buffer until the Node stream took over.
    if (stream === undefined || this.failed) {
      queueMicrotask(listener);
      return this;
    }
    // A stream that failed never drains: its close releases the waiter, whose next write throws.
    const done = (): void => {
      stream.off('drain', done);
      stream.off('close', done);
      listener();
    };
    stream.on('drain', done);
    stream.on('close', done);
    return this;
  }

  /** After a failed write: a closed reader ends the command, anything else goes to Node's stream. */
  private handOver(err: unknown, rest: string | Buffer): boolean {
    if (isErrno(err, 'EPIPE')) {
      this.closed = true;
      throw new OutputClosedError({ cause: err });
    }
    const stream = this.stream();
    // The writes handed over are this module's, so their failure is too: unhandled, the error
    // of the stream (EPIPE once its reader left) ended the process with a stack trace. (What
    // streams through it on its own, exec's output, handles its stream's errors as before.)
    if (this.failed === undefined && stream.listenerCount('error') === 0) {
      stream.on('error', (e: Error) => {
        this.failed = e;
        this.closed = true;
      });
    }
    return stream.write(rest);
  }

  /**
   * Node's stream for this descriptor, for what streams through it (exec's output, a copy, a
   * terminal, progress): from then on every write goes through it, so none overtakes what it
   * still holds.
   */
  stream(): NodeJS.WriteStream {
    this.node ??= this.nodeStream();
    return this.node;
  }
}

export const stdout = new FdOut(1, () => process.stdout);
export const stderr = new FdOut(2, () => process.stderr);
