/**
 * The diff model: what changed in a box's root since a snapshot, one entry per path.
 *
 * Paths are raw bytes (Linux file names need not be UTF-8), absolute inside the box
 * root, starting with '/'. The root itself is '/'. Entries sort bytewise by path.
 *
 * Two renderings:
 * - text (`+ /path`, `~ /path`, `- /path`, or `No changes`): printable ASCII and valid
 *   non-control UTF-8 as is; a backslash as `\\`; control characters (C0, DEL, C1) and
 *   bytes that are not valid UTF-8 as `\xNN`. The escape is unambiguous and reversible
 *   (`unescapePath`).
 * - JSON (`DiffEntryJson`): `path` is the name decoded as UTF-8 when the bytes are valid
 *   UTF-8 (JSON itself escapes control characters, so this is lossless); otherwise `path`
 *   is the text escape above (for people and grep) and `path_b64` carries the exact bytes
 *   in base64. A reader takes `path_b64` when present, else the UTF-8 bytes of `path`.
 */
import { isUtf8 } from 'node:buffer';

export type ChangeKind = 'added' | 'modified' | 'deleted';

export interface DiffEntry {
  /** Raw bytes, absolute inside the root, starting with '/'. */
  path: Buffer;
  kind: ChangeKind;
}

/** The JSON form of a DiffEntry; see the module comment for the encoding. */
export interface DiffEntryJson {
  path: string;
  /** Present only when `path`'s bytes are not valid UTF-8: the exact bytes, base64. */
  path_b64?: string;
  kind: ChangeKind;
}

const MARK: Record<ChangeKind, string> = { added: '+', modified: '~', deleted: '-' };

/** Bytewise order of paths (then kind, so the order is total). */
export function compareDiffEntries(a: DiffEntry, b: DiffEntry): number {
  const c = Buffer.compare(a.path, b.path);
  if (c !== 0) return c;
  return a.kind < b.kind ? -1 : a.kind > b.kind ? 1 : 0;
}

/** A sorted copy. */
export function sortDiffEntries(entries: readonly DiffEntry[]): DiffEntry[] {
  return [...entries].sort(compareDiffEntries);
}

const HEX = '0123456789abcdef';
const hexByte = (b: number): string => `\\x${HEX[b >> 4]}${HEX[b & 15]}`;

/** Length of the valid UTF-8 sequence starting at `i`, or 0 when the bytes there are not one. */
function utf8SequenceLength(buf: Buffer, i: number): number {
  const b0 = buf[i] ?? 0;
  const cont = (j: number): boolean => ((buf[j] ?? 0) & 0xc0) === 0x80 && j < buf.length;
  if (b0 >= 0xc2 && b0 <= 0xdf) return cont(i + 1) ? 2 : 0;
  if (b0 >= 0xe0 && b0 <= 0xef) {
    const b1 = buf[i + 1] ?? 0;
    if (!cont(i + 1) || !cont(i + 2)) return 0;
    if (b0 === 0xe0 && b1 < 0xa0) return 0; // overlong
    if (b0 === 0xed && b1 >= 0xa0) return 0; // UTF-16 surrogates
    return 3;
  }
  if (b0 >= 0xf0 && b0 <= 0xf4) {
    const b1 = buf[i + 1] ?? 0;
    if (!cont(i + 1) || !cont(i + 2) || !cont(i + 3)) return 0;
    if (b0 === 0xf0 && b1 < 0x90) return 0; // overlong
    if (b0 === 0xf4 && b1 >= 0x90) return 0; // above U+10FFFF
    return 4;
  }
  return 0;
}

/** Printable ASCII but the backslash, as latin1 text. */
const PLAIN = /^[\x20-\x5b\x5d-\x7e]*$/;

/**
 * A path's bytes as unambiguous text: see the module comment. `unescapePath` reverses it.
 */
export function escapePath(path: Buffer): string {
  // Most paths are printable ASCII without a backslash: they are their own text, made in one
  // call and checked by one regular expression (compiled to machine code from its first use)
  // rather than a byte at a time (a package install prints thousands).
  const text = path.toString('latin1');
  if (PLAIN.test(text)) return text;
  let out = '';
  let i = 0;
  while (i < path.length) {
    const b = path[i] ?? 0;
    if (b < 0x80) {
      if (b === 0x5c) out += '\\\\';
      else if (b < 0x20 || b === 0x7f) out += hexByte(b);
      else out += String.fromCharCode(b);
      i += 1;
      continue;
    }
    const n = utf8SequenceLength(path, i);
    if (n === 0) {
      out += hexByte(b);
      i += 1;
      continue;
    }
    const ch = path.toString('utf8', i, i + n);
    const cp = ch.codePointAt(0) ?? 0;
    // C1 controls (U+0080..U+009F) would reach a terminal as control codes.
    if (cp >= 0x80 && cp <= 0x9f) for (let j = i; j < i + n; j++) out += hexByte(path[j] ?? 0);
    else out += ch;
    i += n;
  }
  return out;
}

/** The bytes `escapePath` encoded. Throws on text that `escapePath` never produces. */
export function unescapePath(text: string): Buffer {
  const parts: Buffer[] = [];
  let plain = '';
  const flush = (): void => {
    if (plain) parts.push(Buffer.from(plain, 'utf8'));
    plain = '';
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c !== '\\') {
      plain += c;
      continue;
    }
    const next = text[i + 1];
    if (next === '\\') {
      plain += '\\';
      i += 1;
    } else if (next === 'x' && /^[0-9a-fA-F]{2}$/.test(text.slice(i + 2, i + 4))) {
      flush();
      parts.push(Buffer.from([parseInt(text.slice(i + 2, i + 4), 16)]));
      i += 3;
    } else {
      throw new Error(`invalid escape at offset ${i} in ${JSON.stringify(text)}`);
    }
  }
  flush();
  return Buffer.concat(parts);
}

/** One line of the text rendering: `+ /path`, `~ /path` or `- /path`. */
export function renderDiffLine(entry: DiffEntry): string {
  return `${MARK[entry.kind]} ${escapePath(entry.path)}`;
}

/** The text rendering of a whole diff, sorted; `No changes` when empty. No trailing newline. */
export function renderDiffText(entries: readonly DiffEntry[]): string {
  if (entries.length === 0) return 'No changes';
  return sortDiffEntries(entries).map(renderDiffLine).join('\n');
}

export function diffEntryToJson(entry: DiffEntry): DiffEntryJson {
  if (isUtf8(entry.path)) return { path: entry.path.toString('utf8'), kind: entry.kind };
  return { path: escapePath(entry.path), path_b64: entry.path.toString('base64'), kind: entry.kind };
}

export function diffEntryFromJson(json: DiffEntryJson): DiffEntry {
  const path = json.path_b64 === undefined ? Buffer.from(json.path, 'utf8') : Buffer.from(json.path_b64, 'base64');
  return { path, kind: json.kind };
}
