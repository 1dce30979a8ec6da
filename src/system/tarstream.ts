/**
 * Small facts about tar streams shared by the server side (storage/archive.ts) and the CLI's
 * local end of `zomg cp`: what the first member is, how to rename it with GNU tar, and what
 * both ends keep.
 */
import { Readable } from 'node:stream';

/**
 * The GNU tar options of both ends of `zomg cp`: numeric owners, modes, and every xattr —
 * POSIX ACLs included, as their raw `system.posix_acl_*` values, which hold numeric ids as a
 * box needs. Not `--acls`: its text records name users by the packing host's names, and on
 * extraction it sets an ACL made from the mode on every file that has none (one setxattr per
 * file, about a fifth of a copy of many small files).
 */
export const CP_TAR_KEEP = ['--numeric-owner', '-p', '--xattrs', '--xattrs-include=*'] as const;

const BLOCK = 512;

/** The type flag of the archive's first real member (after pax and GNU long-name records), and the stream to read it all from. */
export async function peekFirstType(input: Readable): Promise<{ type: string | undefined; stream: Readable }> {
  const it = input[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const chunks: Buffer[] = [];
  let head = Buffer.alloc(0);
  let offset = 0;
  let type: string | undefined;
  let ended = false;
  while (type === undefined && !ended) {
    while (head.length < offset + BLOCK) {
      const next = await it.next();
      if (next.done) {
        ended = true;
        break;
      }
      chunks.push(next.value);
      head = Buffer.concat([head, next.value]);
    }
    if (ended) break;
    const flag = String.fromCharCode(head[offset + 156] ?? 0);
    if (flag === 'x' || flag === 'g' || flag === 'L' || flag === 'K') {
      const size = Number.parseInt(head.toString('latin1', offset + 124, offset + 136).replace(/\0.*$/s, '').trim() || '0', 8);
      if (!Number.isFinite(size) || size > 1 << 20) break;
      offset += BLOCK + Math.ceil(size / BLOCK) * BLOCK;
      continue;
    }
    type = flag;
  }
  async function* replay(): AsyncGenerator<Buffer> {
    for (const c of chunks) yield c;
    if (ended) return;
    for (;;) {
      const next = await it.next();
      if (next.done) return;
      yield next.value;
    }
  }
  return { type, stream: Readable.from(replay(), { objectMode: false }) };
}

/** Replacement text for a sed `s|…|…|` expression of GNU tar's --transform. */
export const sedReplacement = (text: string): string => text.replace(/[\\&|]/g, (c) => `\\${c}`);
