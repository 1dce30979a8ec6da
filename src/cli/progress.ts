/**
 * Progress of long work on stderr. On a terminal: a bar (cli-progress) when the total is
 * known, else a spinner with the stage and the elapsed time; tool output scrolls above it.
 * Not on a terminal (CI logs): one plain line per stage and the tool output as is.
 * With --json: nothing but tool output lines that a command asks for.
 */
import { createRequire } from 'node:module';
import type * as CliProgress from 'cli-progress';
import type { SingleBar } from 'cli-progress';
import type { Progress } from '../core/types.js';
import { humanBytes } from './render.js';
import { stderr } from './stdio.js';

export interface ProgressRenderer {
  fn(p: Progress): void;
  /** Clears what is drawn (before the result or an error is printed); `completed`: the last stage is ticked off. */
  done(completed?: boolean): void;
}

type ProgressMode = 'tty' | 'plain' | 'off';

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

const elapsed = (ms: number): string => {
  const s = Math.floor(ms / 1000);
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
};

function progressMode(json: boolean, stream: NodeJS.WriteStream): ProgressMode {
  if (json) return 'off';
  return stream.isTTY === true && process.env.TERM !== 'dumb' ? 'tty' : 'plain';
}

/**
 * The renderer of a command's progress, chosen at its first report: whether stderr is a
 * terminal is known only from process.stderr, which for a pipe loads net (~3 ms of a start),
 * and most commands report no progress.
 */
export function progressOnFirstReport(json: boolean): ProgressRenderer {
  let renderer: ProgressRenderer | undefined;
  return {
    fn: (p) => (renderer ??= progressRenderer(progressMode(json, stderr.stream()), stderr.stream())).fn(p),
    done: (completed) => renderer?.done(completed),
  };
}

function progressRenderer(mode: ProgressMode, out: NodeJS.WriteStream): ProgressRenderer {
  if (mode === 'off') return { fn: () => undefined, done: () => undefined };
  if (mode === 'plain') return plainRenderer(out);
  return ttyRenderer(out);
}

function plainRenderer(out: NodeJS.WriteStream): ProgressRenderer {
  const start = Date.now();
  let phase = '';
  let quarter = -1;
  return {
    fn(p) {
      if (p.line !== undefined) {
        out.write(`${p.line}\n`);
        return;
      }
      if (p.phase !== phase) {
        phase = p.phase;
        quarter = -1;
        out.write(`${p.phase}${p.total !== undefined ? ` (${humanBytes(p.total)})` : ''}… [${elapsed(Date.now() - start)}]\n`);
      }
      // A line at each quarter of a known total: enough for a log, never a flood.
      if (p.total !== undefined && p.total > 0 && p.done !== undefined) {
        const q = Math.floor((4 * p.done) / p.total);
        if (q > quarter && q > 0) {
          quarter = q;
          out.write(`${p.phase}: ${Math.min(100, q * 25)}% [${elapsed(Date.now() - start)}]\n`);
        }
      }
    },
    done: () => undefined,
  };
}

function ttyRenderer(out: NodeJS.WriteStream): ProgressRenderer {
  const start = Date.now();
  let phase: string | undefined;
  let phaseStart = start;
  let detail = '';
  let frame = 0;
  let drawn = false;
  let bar: SingleBar | undefined;
  let timer: NodeJS.Timeout | undefined;

  const clear = (): void => {
    if (drawn) out.write('\r\x1b[K');
    drawn = false;
  };
  const draw = (): void => {
    if (phase === undefined || bar) return;
    const text = `${FRAMES[frame++ % FRAMES.length]} ${phase} ${elapsed(Date.now() - phaseStart)}${detail ? `  ${detail}` : ''}`;
    const width = out.columns || 80;
    out.write(`\r\x1b[K${text.length > width - 1 ? `${text.slice(0, width - 2)}…` : text}`);
    drawn = true;
  };
  const stopBar = (): void => {
    bar?.stop();
    bar = undefined;
  };
  const finishPhase = (): void => {
    if (phase === undefined) return;
    stopBar();
    clear();
    out.write(`✓ ${phase} ${elapsed(Date.now() - phaseStart)}\n`);
    phase = undefined;
  };
  return {
    fn(p) {
      if (p.line !== undefined) {
        // A bar is redrawn from the next update, below the line.
        stopBar();
        clear();
        out.write(`${p.line}\n`);
        draw();
        return;
      }
      if (p.phase !== phase) {
        finishPhase();
        phase = p.phase;
        phaseStart = Date.now();
        detail = '';
      }
      if (p.total !== undefined && p.total > 0 && p.done !== undefined) {
        if (!bar) {
          clear();
          const { SingleBar: Bar, Presets } = createRequire(import.meta.url)('cli-progress') as typeof CliProgress;
          bar = new Bar(
            {
              stream: out,
              format: `${phase} [{bar}] {percentage}% | {doneText} / {totalText} | {elapsedText}`,
              hideCursor: true,
              clearOnComplete: true,
              barsize: 30,
              fps: 10,
            },
            Presets.legacy,
          );
          bar.start(p.total, 0, { doneText: humanBytes(0), totalText: humanBytes(p.total), elapsedText: '0s' });
        }
        bar.update(Math.min(p.done, p.total), { doneText: humanBytes(p.done), totalText: humanBytes(p.total), elapsedText: elapsed(Date.now() - phaseStart) });
        return;
      }
      if (p.done !== undefined) detail = humanBytes(p.done);
      timer ??= setInterval(draw, 100).unref();
      draw();
    },
    done(completed = false) {
      if (timer) clearInterval(timer);
      timer = undefined;
      if (completed) finishPhase();
      stopBar();
      clear();
      phase = undefined;
    },
  };
}
