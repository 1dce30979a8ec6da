/** The one renderer: aligned tables with human sizes for people, JSON (bytes, RFC 3339) for programs. */
import { createRequire } from 'node:module';
import type CliTable3 from 'cli-table3';

declare const require: NodeJS.Require | undefined;

// Loaded on first use: most commands print no table (CLI start-up time). In the bundle the
// plain `require` call is bundled (evaluated only here); unbundled ESM has no `require`.
let TableClass: typeof CliTable3 | undefined;
const loadTable = (): typeof CliTable3 =>
  (TableClass ??= (typeof require === 'function' ? require('cli-table3') : createRequire(import.meta.url)('cli-table3')) as typeof CliTable3);

export function humanBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

const PLAIN = {
  top: '', 'top-mid': '', 'top-left': '', 'top-right': '',
  bottom: '', 'bottom-mid': '', 'bottom-left': '', 'bottom-right': '',
  left: '', 'left-mid': '', mid: '', 'mid-mid': '', right: '', 'right-mid': '', middle: '   ',
};

// Printable ASCII only: every character is one column wide, so plain padding aligns exactly.
const ASCII = /^[\x20-\x7e]*$/;

/**
 * An aligned, borderless table with a header row. Cells of printable ASCII (names, sizes,
 * times: nearly every table) are aligned by padding, which gives what cli-table3 gives
 * without loading and running its width measurement (a measurable part of `zomg list`);
 * anything else (wide or combining characters, newlines) goes through cli-table3.
 */
export function table(head: string[], rows: Array<Array<string | number>>): string {
  const cells = [head, ...rows.map((row) => row.map(String))];
  if (cells.every((row) => row.every((cell) => ASCII.test(cell)))) return plainTable(cells);
  return libraryTable(head, rows);
}

function plainTable(cells: string[][]): string {
  const columns = Math.max(...cells.map((row) => row.length));
  const widths = Array.from({ length: columns }, (_, c) => Math.max(...cells.map((row) => (row[c] ?? '').length)));
  return cells.map((row) => widths.map((w, c) => (row[c] ?? '').padEnd(w)).join('   ').trimEnd()).join('\n');
}

/** The same table through cli-table3 (exported for the test that holds the two to the same output). */
export function libraryTable(head: string[], rows: Array<Array<string | number>>): string {
  const Table = loadTable();
  const t = new Table({ head, chars: PLAIN, style: { head: [], border: [], 'padding-left': 0, 'padding-right': 0 } });
  for (const row of rows) t.push(row.map(String));
  return t
    .toString()
    .split('\n')
    .map((line) => line.trimEnd())
    .join('\n');
}

export const json = (value: unknown): string => JSON.stringify(value, null, 2);
