/**
 * Writes `zomg diff status` (and `zomg data diff`) while the diff is verified, byte for byte
 * what the renderer prints for the whole result (`+ /path` lines or `No changes`; with --json
 * the same 2-space-indented object as json(status)), so a diff of a million paths starts
 * printing at once and is never held in memory as one string.
 */
import { diffEntryToJson, renderDiffLine, type DiffEntry } from '../core/diff.js';
import type { DiffSink, DiffStatusHead } from '../core/service.js';
import type { RunContext } from './command.js';
import { stdout, type TextOut } from './stdio.js';

const FLUSH_BYTES = 64 * 1024;

/**
 * The diff commands' look at the head: a diff found by the trees' own items (`tree`) is a
 * short burst (RunContext.burst). One through the send or a walk can run long, and start
 * programs (getfattr), whose Node built-ins would then load without their cached code.
 */
export const burstOfTree =
  (ctx: Pick<RunContext, 'burst'>) =>
  (head: { method: string }): void => {
    if (head.method === 'tree') ctx.burst();
  };

/** `H`: the head of what is compared (a box's DiffStatusHead, a volume's VolumeDiffStatusHead); in JSON its fields come first, then `changes`. */
export class DiffStatusWriter<H extends object = DiffStatusHead> implements DiffSink<H> {
  private buf = '';
  private count = 0;

  constructor(
    private readonly asJson: boolean,
    private readonly out: TextOut = stdout,
    /** Told the head first (the diff commands: whether the rest is a short burst, RunContext.burst). */
    private readonly onHead?: (head: H) => void,
  ) {}

  /** The head, once the diff said what it compares. */
  headSeen: H | undefined;

  head(head: H): Promise<void> {
    this.headSeen = head;
    this.onHead?.(head);
    if (this.asJson) {
      // json(status) with the changes still to come: its text up to the array's '['.
      const text = JSON.stringify({ ...head, changes: [0] }, null, 2);
      this.buf += text.slice(0, text.lastIndexOf('[') + 1);
    }
    return this.flush(false);
  }

  change(entry: DiffEntry): Promise<void> | undefined {
    if (this.asJson) {
      const item = JSON.stringify(diffEntryToJson(entry), null, 2).replace(/\n/g, '\n    ');
      this.buf += `${this.count > 0 ? ',' : ''}\n    ${item}`;
    } else {
      this.buf += `${this.count > 0 ? '\n' : ''}${renderDiffLine(entry)}`;
    }
    this.count++;
    return this.buf.length < FLUSH_BYTES ? undefined : this.flush(false);
  }

  /** Closes the output after the last change. */
  end(): Promise<void> {
    if (this.asJson) this.buf += this.count > 0 ? '\n  ]\n}\n' : ']\n}\n';
    else this.buf += this.count > 0 ? '\n' : 'No changes\n';
    return this.flush(true);
  }

  private async flush(force: boolean): Promise<void> {
    if (this.buf.length < FLUSH_BYTES && !force) return;
    const chunk = this.buf;
    this.buf = '';
    if (chunk.length > 0 && !this.out.write(chunk)) await new Promise<void>((resolve) => this.out.once('drain', resolve));
  }
}
