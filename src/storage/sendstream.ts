/**
 * A streaming parser of the binary btrfs send stream, version 1 (the format `btrfs send`
 * writes by default; see research/machine.md §4).
 *
 *   stream  = "btrfs-stream\0" u32le(version = 1) command*
 *   command = u32le(payload length) u16le(command id) u32le(crc32c) payload
 *   payload = (u16le(attribute type) u16le(length) value)*
 *
 * The crc32c covers the 10-byte command header (with the crc field zeroed) and the
 * payload, seeded with 0 and without the final inversion (btrfs' `crc32c(0, …)`).
 * Paths are raw bytes relative to the subvolume root ("" is the root), decoded as latin1
 * strings: one character per byte, so any bytes come back whole (`Buffer.from(p,
 * 'latin1')`), and a replay compares, splits and keys them as strings, without a Buffer
 * object per path and per part of one. We parse the binary stream, never `btrfs receive
 * --dump`, whose escaping is lossy to parse.
 */
import type { Readable } from 'node:stream';
import { UnprocessableError } from '../core/errors.js';

/** The send stream was not a well-formed v1 stream (garbage, truncated, corrupt). */
export class SendStreamError extends UnprocessableError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('ZOMG_SEND_STREAM_INVALID', `invalid btrfs send stream: ${message}`, options);
  }
}

interface Timespec {
  sec: number;
  nsec: number;
}

/**
 * A path of the stream (or a symlink's target): its bytes as a latin1 string, one
 * character per byte.
 */
export type StreamPath = string;

/** The commands of send stream v1, with their attributes decoded. */
export type SendCommand =
  | { cmd: 'subvol'; path: StreamPath; uuid: Buffer; ctransid: number }
  | { cmd: 'snapshot'; path: StreamPath; uuid: Buffer; ctransid: number; cloneUuid: Buffer; cloneCtransid: number }
  | { cmd: 'mkfile' | 'mkdir' | 'mkfifo' | 'mksock'; path: StreamPath; ino: number }
  | { cmd: 'mknod'; path: StreamPath; ino: number; mode: number; rdev: number }
  | { cmd: 'symlink'; path: StreamPath; ino: number; target: StreamPath }
  | { cmd: 'rename'; path: StreamPath; to: StreamPath }
  /** A new name `path` for the inode currently at `target`. */
  | { cmd: 'link'; path: StreamPath; target: StreamPath }
  | { cmd: 'unlink' | 'rmdir'; path: StreamPath }
  | { cmd: 'set_xattr'; path: StreamPath; name: Buffer; data: Buffer }
  | { cmd: 'remove_xattr'; path: StreamPath; name: Buffer }
  | { cmd: 'write'; path: StreamPath; offset: number; data: Buffer }
  | {
      cmd: 'clone';
      path: StreamPath;
      offset: number;
      length: number;
      cloneUuid: Buffer;
      cloneCtransid: number;
      clonePath: StreamPath;
      cloneOffset: number;
    }
  | { cmd: 'truncate'; path: StreamPath; size: number }
  | { cmd: 'chmod'; path: StreamPath; mode: number }
  | { cmd: 'chown'; path: StreamPath; uid: number; gid: number }
  | { cmd: 'utimes'; path: StreamPath; atime: Timespec; mtime: Timespec; ctime: Timespec }
  /** Only with --no-data: the range changed; the bytes are not in the stream. */
  | { cmd: 'update_extent'; path: StreamPath; offset: number; length: number }
  | { cmd: 'end' };

type SendCommandName = SendCommand['cmd'];

const MAGIC = Buffer.from('btrfs-stream\0', 'latin1');
const STREAM_HEADER_LEN = MAGIC.length + 4;
const CMD_HEADER_LEN = 10;
/** v1 commands fit a 64 KiB send buffer; anything far larger is garbage, not a big command. */
const MAX_CMD_LEN = 1024 * 1024;

const CMD_NAMES: readonly (SendCommandName | undefined)[] = [
  undefined, 'subvol', 'snapshot', 'mkfile', 'mkdir', 'mknod', 'mkfifo', 'mksock', 'symlink', 'rename',
  'link', 'unlink', 'rmdir', 'set_xattr', 'remove_xattr', 'write', 'clone', 'truncate', 'chmod', 'chown',
  'utimes', 'end', 'update_extent',
];

// Attribute types (btrfs send.h, v1).
const A = {
  UUID: 1,
  CTRANSID: 2,
  INO: 3,
  SIZE: 4,
  MODE: 5,
  UID: 6,
  GID: 7,
  RDEV: 8,
  CTIME: 9,
  MTIME: 10,
  ATIME: 11,
  XATTR_NAME: 13,
  XATTR_DATA: 14,
  PATH: 15,
  PATH_TO: 16,
  PATH_LINK: 17,
  FILE_OFFSET: 18,
  DATA: 19,
  CLONE_UUID: 20,
  CLONE_CTRANSID: 21,
  CLONE_PATH: 22,
  CLONE_OFFSET: 23,
  CLONE_LEN: 24,
} as const;
const MAX_ATTR = 31;

const CRC_TABLE = ((): Uint32Array => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** Raw crc32c update (no pre/post inversion), as btrfs computes it with seed 0. */
export function crc32cRaw(seed: number, buf: Uint8Array, start = 0, end = buf.length): number {
  let c = seed >>> 0;
  for (let i = start; i < end; i++) c = (CRC_TABLE[(c ^ (buf[i] ?? 0)) & 0xff] ?? 0) ^ (c >>> 8);
  return c >>> 0;
}

/**
 * Set (true) on a stream whose commands' checksums were checked as it was read (the
 * in-process send: storage/btrfs-ioctl.ts), so that its parser need not check them again.
 */
export const CHECKSUMS_CHECKED: unique symbol = Symbol('zomg.sendStream.checksumsChecked');

/** Whether `source` says its checksums were checked already (see CHECKSUMS_CHECKED). */
export const checksumsChecked = (source: object): boolean => (source as { [CHECKSUMS_CHECKED]?: unknown })[CHECKSUMS_CHECKED] === true;

export interface SendStreamParserOptions {
  /** Check each command's crc32c (default true). */
  verifyCrc?: boolean;
  /**
   * Commands the caller has no use for: still framed and checksummed, but neither decoded
   * nor returned (the diff skips `utimes`, one per changed inode, with its three times).
   */
  skip?: readonly SendCommandName[];
}

/**
 * Incremental parser: `push` chunks split anywhere, get the complete commands back;
 * `finish` at end of input throws unless the stream ended with its `end` command.
 * Returned Buffers may share memory with the pushed chunks.
 */
export class SendStreamParser {
  private buf: Buffer = Buffer.alloc(0);
  private pos = 0;
  /** Absolute offset of `buf[0]` in the stream, for error messages. */
  private base = 0;
  private headerDone = false;
  private ended = false;
  private readonly verifyCrc: boolean;
  private readonly skipIds: ReadonlySet<number>;
  /** Protocol version from the stream header. */
  version = 0;

  constructor(options: SendStreamParserOptions = {}) {
    this.verifyCrc = options.verifyCrc ?? true;
    this.skipIds = new Set((options.skip ?? []).filter((n) => n !== 'end').map((n) => CMD_NAMES.indexOf(n)));
  }

  push(chunk: Buffer): SendCommand[] {
    if (chunk.length === 0) return [];
    if (this.pos >= this.buf.length) {
      this.base += this.buf.length;
      this.buf = chunk;
    } else {
      this.base += this.pos;
      this.buf = Buffer.concat([this.buf.subarray(this.pos), chunk]);
    }
    this.pos = 0;
    const out: SendCommand[] = [];
    if (!this.headerDone) {
      if (this.buf.length < STREAM_HEADER_LEN) {
        if (!MAGIC.subarray(0, Math.min(this.buf.length, MAGIC.length)).equals(this.buf.subarray(0, MAGIC.length))) {
          throw new SendStreamError('missing "btrfs-stream" header');
        }
        return out;
      }
      if (!this.buf.subarray(0, MAGIC.length).equals(MAGIC)) throw new SendStreamError('missing "btrfs-stream" header');
      this.version = this.buf.readUInt32LE(MAGIC.length);
      if (this.version !== 1) {
        throw new SendStreamError(`unsupported stream version ${this.version} (only version 1 is understood)`);
      }
      this.pos = STREAM_HEADER_LEN;
      this.headerDone = true;
    }
    while (this.buf.length - this.pos >= CMD_HEADER_LEN) {
      const at = this.base + this.pos;
      if (this.ended) throw new SendStreamError(`data after the end command at offset ${at}`);
      const len = this.buf.readUInt32LE(this.pos);
      const id = this.buf.readUInt16LE(this.pos + 4);
      if (len > MAX_CMD_LEN) throw new SendStreamError(`command at offset ${at} claims ${len} bytes`);
      if (this.buf.length - this.pos < CMD_HEADER_LEN + len) break;
      const start = this.pos;
      const payloadStart = start + CMD_HEADER_LEN;
      const payloadEnd = payloadStart + len;
      if (this.verifyCrc) {
        const want = this.buf.readUInt32LE(start + 6);
        let c = crc32cRaw(0, this.buf, start, start + 6);
        c = crc32cRaw(c, ZERO4);
        c = crc32cRaw(c, this.buf, payloadStart, payloadEnd);
        if (c !== want) throw new SendStreamError(`bad checksum of command ${id} at offset ${at}`);
      }
      this.pos = payloadEnd;
      if (this.skipIds.has(id)) continue;
      const command = decodeCommand(id, this.buf, payloadStart, payloadEnd, at);
      if (command.cmd === 'end') this.ended = true;
      out.push(command);
    }
    cur.buf = NO_BYTES; // the decoder's view of the chunk goes with it
    return out;
  }

  /** Call at end of input: throws when the stream stopped early. */
  finish(): void {
    const rest = this.buf.length - this.pos;
    if (!this.headerDone) throw new SendStreamError(this.buf.length === 0 ? 'empty stream' : 'truncated stream header');
    if (rest > 0 && this.ended) throw new SendStreamError(`${rest} bytes of data after the end command`);
    if (rest > 0) throw new SendStreamError(`truncated: ${rest} bytes of an incomplete command at offset ${this.base + this.pos}`);
    if (!this.ended) throw new SendStreamError('truncated: the stream stopped before its end command');
  }
}

const ZERO4 = Buffer.alloc(4);

/** Attribute offsets of the command being decoded: [start, length] per type; start -1 = absent. */
const attrAt = new Int32Array((MAX_ATTR + 1) * 2);

/**
 * The command being decoded, for the attribute readers below (module functions, not
 * closures: a closure per reader per command was a measurable part of a cold parse).
 */
const NO_BYTES = Buffer.alloc(0);
const cur: { buf: Buffer; name: SendCommandName; at: number } = { buf: NO_BYTES, name: 'end', at: 0 };

/** Offset of attribute `type`, checking it is present (and `size` bytes long when given). */
function attrOffset(type: number, size?: number): number {
  const o = attrAt[type * 2] ?? -1;
  if (o < 0) throw new SendStreamError(`${cur.name} at offset ${cur.at} lacks attribute ${type}`);
  const len = attrAt[type * 2 + 1] ?? 0;
  if (size !== undefined && len !== size) {
    throw new SendStreamError(`attribute ${type} of ${cur.name} at offset ${cur.at} is ${len} bytes, not ${size}`);
  }
  return o;
}

function attrBytes(type: number): Buffer {
  const o = attrOffset(type);
  return cur.buf.subarray(o, o + (attrAt[type * 2 + 1] ?? 0));
}

/** A path attribute as a latin1 string (see StreamPath). */
function attrPath(type: number): StreamPath {
  const o = attrOffset(type);
  return cur.buf.toString('latin1', o, o + (attrAt[type * 2 + 1] ?? 0));
}

function attrU64(type: number): number {
  const o = attrOffset(type, 8);
  const hi = cur.buf.readUInt32LE(o + 4);
  if (hi > 0x1fffff) throw new SendStreamError(`attribute ${type} of ${cur.name} at offset ${cur.at} is too large`);
  return hi * 0x1_0000_0000 + cur.buf.readUInt32LE(o);
}

function attrTime(type: number): Timespec {
  const o = attrOffset(type, 12);
  return { sec: cur.buf.readInt32LE(o + 4) * 0x1_0000_0000 + cur.buf.readUInt32LE(o), nsec: cur.buf.readUInt32LE(o + 8) };
}

const pathAttr = (): StreamPath => attrPath(A.PATH);

function decodeCommand(id: number, buf: Buffer, start: number, end: number, at: number): SendCommand {
  const name = CMD_NAMES[id];
  if (name === undefined) throw new SendStreamError(`unknown command id ${id} at offset ${at}`);
  attrAt.fill(-1);
  let p = start;
  while (p < end) {
    if (end - p < 4) throw new SendStreamError(`truncated attribute in ${name} at offset ${at}`);
    const type = buf.readUInt16LE(p);
    const len = buf.readUInt16LE(p + 2);
    if (type === 0 || type > MAX_ATTR) throw new SendStreamError(`unknown attribute type ${type} in ${name} at offset ${at}`);
    if (p + 4 + len > end) throw new SendStreamError(`attribute ${type} overruns ${name} at offset ${at}`);
    attrAt[type * 2] = p + 4;
    attrAt[type * 2 + 1] = len;
    p += 4 + len;
  }
  cur.buf = buf;
  cur.name = name;
  cur.at = at;
  const get = attrBytes;
  const u64 = attrU64;
  const path = pathAttr;
  switch (name) {
    case 'subvol':
      return { cmd: name, path: path(), uuid: get(A.UUID), ctransid: u64(A.CTRANSID) };
    case 'snapshot':
      return {
        cmd: name,
        path: path(),
        uuid: get(A.UUID),
        ctransid: u64(A.CTRANSID),
        cloneUuid: get(A.CLONE_UUID),
        cloneCtransid: u64(A.CLONE_CTRANSID),
      };
    case 'mkfile':
    case 'mkdir':
    case 'mkfifo':
    case 'mksock':
      return { cmd: name, path: path(), ino: u64(A.INO) };
    case 'mknod':
      return { cmd: name, path: path(), ino: u64(A.INO), mode: u64(A.MODE), rdev: u64(A.RDEV) };
    case 'symlink':
      return { cmd: name, path: path(), ino: u64(A.INO), target: attrPath(A.PATH_LINK) };
    case 'rename':
      return { cmd: name, path: path(), to: attrPath(A.PATH_TO) };
    case 'link':
      return { cmd: name, path: path(), target: attrPath(A.PATH_LINK) };
    case 'unlink':
    case 'rmdir':
      return { cmd: name, path: path() };
    case 'set_xattr':
      return { cmd: name, path: path(), name: get(A.XATTR_NAME), data: get(A.XATTR_DATA) };
    case 'remove_xattr':
      return { cmd: name, path: path(), name: get(A.XATTR_NAME) };
    case 'write':
      return { cmd: name, path: path(), offset: u64(A.FILE_OFFSET), data: get(A.DATA) };
    case 'clone':
      return {
        cmd: name,
        path: path(),
        offset: u64(A.FILE_OFFSET),
        length: u64(A.CLONE_LEN),
        cloneUuid: get(A.CLONE_UUID),
        cloneCtransid: u64(A.CLONE_CTRANSID),
        clonePath: attrPath(A.CLONE_PATH),
        cloneOffset: u64(A.CLONE_OFFSET),
      };
    case 'truncate':
      return { cmd: name, path: path(), size: u64(A.SIZE) };
    case 'chmod':
      return { cmd: name, path: path(), mode: u64(A.MODE) };
    case 'chown':
      return { cmd: name, path: path(), uid: u64(A.UID), gid: u64(A.GID) };
    case 'utimes':
      return { cmd: name, path: path(), atime: attrTime(A.ATIME), mtime: attrTime(A.MTIME), ctime: attrTime(A.CTIME) };
    case 'update_extent':
      return { cmd: name, path: path(), offset: u64(A.FILE_OFFSET), length: u64(A.SIZE) };
    case 'end':
      return { cmd: name };
  }
}

/**
 * Parses a send stream from any async source of chunks (a Readable, a child's stdout),
 * yielding commands as they complete. Throws SendStreamError on garbage or truncation;
 * errors of the source itself propagate unchanged.
 */
export async function* parseSendStream(
  source: Readable | AsyncIterable<Buffer | Uint8Array>,
  options: SendStreamParserOptions = {},
): AsyncGenerator<SendCommand, void, undefined> {
  const parser = new SendStreamParser(options);
  for await (const chunk of source as AsyncIterable<Buffer | Uint8Array | string>) {
    if (typeof chunk === 'string') throw new SendStreamError('the source yields text, not bytes (was an encoding set?)');
    yield* parser.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
  }
  parser.finish();
}
