/**
 * Node built-ins that cost milliseconds to load (crypto, child_process, zlib, net, dgram,
 * fs/promises), loaded on first use: every CLI start paid for them, also the commands that
 * never use them (`zomg list` spawns nothing, hashes nothing). Measured in bench/cli-start.ts.
 */
import type * as ChildProcess from 'node:child_process';
import type * as Crypto from 'node:crypto';
import type * as Dgram from 'node:dgram';
import type * as FsPromises from 'node:fs/promises';
import { createRequire } from 'node:module';
import type * as Net from 'node:net';
import type * as Zlib from 'node:zlib';

const load = createRequire(import.meta.url);

export const nodeCrypto = (): typeof Crypto => load('node:crypto') as typeof Crypto;
export const childProcess = (): typeof ChildProcess => load('node:child_process') as typeof ChildProcess;
export const nodeZlib = (): typeof Zlib => load('node:zlib') as typeof Zlib;
export const nodeNet = (): typeof Net => load('node:net') as typeof Net;
export const nodeDgram = (): typeof Dgram => load('node:dgram') as typeof Dgram;
/**
 * node:fs/promises loads readline and the fs watchers with it (8 modules, ~1.5 ms): the
 * storage layer's rare calls (renames, a nested subvolume's directory) go through this,
 * and a diff makes none.
 */
let fsp: typeof FsPromises | undefined;
// Kept once loaded: a tree's size is a walk that calls it for each file.
export const fsPromises = (): typeof FsPromises => (fsp ??= load('node:fs/promises') as typeof FsPromises);

/** `bytes` random bytes as hex (node:crypto, loaded on first use). */
export const randomHex = (bytes: number): string => nodeCrypto().randomBytes(bytes).toString('hex');

/**
 * `bytes` bytes as hex from Math.random: for names that must not collide (a process's
 * temporary entries, against each other and against a dead process's leftovers) but need not
 * be unpredictable. A command that needs nothing secret then never loads node:crypto (a
 * diff of a live root takes such a name on its critical path).
 */
export function nonceHex(bytes: number): string {
  let hex = '';
  for (let i = 0; i < bytes; i++) hex += Math.floor(Math.random() * 256).toString(16).padStart(2, '0');
  return hex;
}
