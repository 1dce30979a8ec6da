/** `zomg serve`: the token, the loopback rule, listen, and a clean shutdown on signals. */
import { randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidArgumentError } from '../core/errors.js';
import type { ZomgService } from '../core/service.js';
import { atomicWriteFile, isErrno } from '../system/fs.js';
import { buildServer } from './server.js';

export interface ListenAddress {
  host: string;
  port: number;
}

export function parseListen(value: string): ListenAddress {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(value);
  const port = Number(m?.[3]);
  if (!m || port > 65535) throw new InvalidArgumentError(`invalid listen address "${value}": expected host:port, e.g. 127.0.0.1:7070`);
  return { host: (m[1] ?? m[2]) as string, port };
}

export const isLoopback = (host: string): boolean => host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);

/**
 * The server's token: read from the state directory, or created (0600) on first start. A
 * token file other users could read is tightened to 0600, with a warning (the token may
 * already have leaked: rotate it by deleting the file).
 */
export function loadOrCreateToken(stateDir: string, warn: (line: string) => void = () => undefined): { token: string; created: boolean } {
  const path = join(stateDir, 'token');
  try {
    const mode = statSync(path).mode & 0o777;
    if ((mode & 0o077) !== 0) {
      chmodSync(path, 0o600);
      warn(`warning: the API token file was readable by other users (mode ${mode.toString(8).padStart(4, '0')}); it is now 0600 — delete it to have a new token made if it may have leaked`);
    }
    const token = readFileSync(path, 'utf8').trim();
    // An empty file would mean "any empty bearer matches": treat it as no token and make one.
    if (token.length >= 16) return { token, created: false };
  } catch (err) {
    if (!isErrno(err, 'ENOENT')) throw err;
  }
  const token = randomBytes(24).toString('base64url');
  atomicWriteFile(path, `${token}\n`, 0o600);
  return { token, created: true };
}

export interface ServeOptions {
  service: ZomgService;
  stateDir: string;
  listen: string;
  /** Serve without a token (refused beyond loopback). */
  noAuth?: boolean;
  /** Let clients create privileged boxes (off by default). */
  allowPrivileged?: boolean;
  log: (line: string) => void;
}

export async function serve(options: ServeOptions): Promise<{ close(): Promise<void>; url: string }> {
  const addr = parseListen(options.listen);
  if (options.noAuth && !isLoopback(addr.host)) {
    throw new InvalidArgumentError(`refusing to listen on ${addr.host} without a token: only loopback addresses may run with --no-auth`);
  }
  let token: string | null = null;
  if (!options.noAuth) {
    const t = loadOrCreateToken(options.stateDir, options.log);
    token = t.token;
    if (t.created) options.log(`Created API token (stored in ${join(options.stateDir, 'token')}, mode 0600): ${t.token}`);
  }
  const app = await buildServer({ service: options.service, token, logger: false, allowPrivileged: options.allowPrivileged === true });
  await app.listen({ host: addr.host, port: addr.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : addr.port;
  const url = `http://${addr.host.includes(':') ? `[${addr.host}]` : addr.host}:${port}`;
  options.log(`zomg API listening on ${url}`);
  return { url, close: () => app.close() };
}
