/** `zomg serve`: the token, the loopback rule, listen, and a clean shutdown on signals. */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidArgumentError } from '../core/errors.js';
import type { ZomgService } from '../core/service.js';
import { atomicWriteFile, isErrno } from '../system/fs.js';
import { allowedHosts } from './origin.js';
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

/** The server's token: read from the state directory, or created (0600) on first start. */
export function loadOrCreateToken(stateDir: string): { token: string; created: boolean } {
  const path = join(stateDir, 'token');
  try {
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
  log: (line: string) => void;
}

/**
 * The last line of defence of a long-running server: an error that escaped every handler
 * (a bug) is logged and the server keeps answering everyone else. Returns the uninstaller.
 */
export function installProcessGuard(log: (line: string) => void): () => void {
  const onError = (kind: string) => (err: unknown): void => {
    const detail = err instanceof Error ? (err.stack ?? err.message) : String(err);
    log(`zomg serve: ${kind} (the server keeps running): ${detail}`);
  };
  const onException = onError('uncaught exception');
  const onRejection = onError('unhandled rejection');
  process.on('uncaughtException', onException);
  process.on('unhandledRejection', onRejection);
  return () => {
    process.off('uncaughtException', onException);
    process.off('unhandledRejection', onRejection);
  };
}

export async function serve(options: ServeOptions): Promise<{ close(): Promise<void>; url: string }> {
  const addr = parseListen(options.listen);
  if (options.noAuth && !isLoopback(addr.host)) {
    throw new InvalidArgumentError(`refusing to listen on ${addr.host} without a token: only loopback addresses may run with --no-auth`);
  }
  let token: string | null = null;
  if (!options.noAuth) {
    const t = loadOrCreateToken(options.stateDir);
    token = t.token;
    if (t.created) options.log(`Created API token (stored in ${join(options.stateDir, 'token')}, mode 0600): ${t.token}`);
  }
  // Known once listening (port 0 picks one); no request arrives before.
  let hosts = new Set<string>();
  const app = await buildServer({ service: options.service, token, logger: false, allowedHosts: () => hosts });
  const uninstall = installProcessGuard(options.log);
  try {
    await app.listen({ host: addr.host, port: addr.port });
  } catch (err) {
    uninstall();
    throw err;
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : addr.port;
  hosts = allowedHosts(addr.host, port);
  const url = `http://${addr.host.includes(':') ? `[${addr.host}]` : addr.host}:${port}`;
  options.log(`zomg API listening on ${url}`);
  return {
    url,
    close: async () => {
      await app.close();
      uninstall();
    },
  };
}
