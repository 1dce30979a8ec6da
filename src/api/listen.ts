/** `zomg serve`: the token, the loopback rule, listen, and a clean shutdown on signals. */
import { randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, statSync } from 'node:fs';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ConflictError, InvalidArgumentError } from '../core/errors.js';
import type { ZomgService } from '../core/service.js';
import { atomicWriteFile, isErrno } from '../system/fs.js';
import { isLoopbackHost } from '../core/net.js';
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

/** Why listening failed, in words a user can act on (the errors a listen can expect). */
function listenError(err: unknown, addr: ListenAddress): unknown {
  const where = `${addr.host.includes(':') ? `[${addr.host}]` : addr.host}:${addr.port}`;
  if (isErrno(err, 'EADDRINUSE')) {
    return new ConflictError('ZOMG_ADDRESS_IN_USE', `cannot listen on ${where}: port ${addr.port} is already in use`, {
      cause: err,
      hint: `stop what listens there (another \`zomg serve\`?) or pick another port: zomg serve --listen ${addr.host.includes(':') ? `[${addr.host}]` : addr.host}:${addr.port === 7070 ? 7071 : 7070}`,
    });
  }
  if (isErrno(err, 'EADDRNOTAVAIL', 'ENOTFOUND', 'EAI_AGAIN')) {
    return new InvalidArgumentError(`cannot listen on ${where}: ${addr.host} is not an address of this machine`, {
      code: 'ZOMG_ADDRESS_UNAVAILABLE',
      cause: err,
      hint: 'pass one of its addresses with --listen, e.g. --listen 127.0.0.1:7070',
    });
  }
  if (isErrno(err, 'EACCES')) {
    return new InvalidArgumentError(`cannot listen on ${where}: permission denied`, {
      code: 'ZOMG_ADDRESS_DENIED',
      cause: err,
      hint: 'ports below 1024 need privileges: pick a higher one with --listen, e.g. --listen 127.0.0.1:7070',
    });
  }
  return err;
}

/**
 * One line per request: method, path (never the query string: it may carry values a log
 * should not keep; the token travels in a header and is never logged), status, duration.
 * On the raw server, so every route and every error counts; a WebSocket is logged when it closes.
 */
function logRequests(server: Server, log: (line: string) => void): void {
  const pathOf = (req: IncomingMessage): string => (req.url ?? '').split('?')[0] ?? '';
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const start = performance.now();
    res.once('close', () => log(`${req.method} ${pathOf(req)} ${res.statusCode} ${(performance.now() - start).toFixed(1)} ms`));
  });
  server.on('upgrade', (req: IncomingMessage, socket: Socket) => {
    const start = performance.now();
    socket.once('close', () => log(`${req.method} ${pathOf(req)} websocket ${(performance.now() - start).toFixed(1)} ms`));
  });
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
  /** One line per request on `log`: method, path (never the query string), status, duration. */
  logRequests?: boolean;
}

/**
 * The last line of defence of a long-running server: an error that escaped every handler
 * (a bug) is logged and the server keeps answering everyone else. Returns the uninstaller.
 */
function installProcessGuard(log: (line: string) => void): () => void {
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
  if (options.noAuth && !isLoopbackHost(addr.host)) {
    throw new InvalidArgumentError(`refusing to listen on ${addr.host} without a token: only loopback addresses may run with --no-auth`);
  }
  let token: string | null = null;
  if (!options.noAuth) {
    const t = loadOrCreateToken(options.stateDir, options.log);
    token = t.token;
    if (t.created) options.log(`Created API token (stored in ${join(options.stateDir, 'token')}, mode 0600): ${t.token}`);
  }
  // Known once listening (port 0 picks one); no request arrives before.
  let hosts = new Set<string>();
  const app = await buildServer({ service: options.service, token, logger: false, allowPrivileged: options.allowPrivileged === true, allowedHosts: () => hosts });
  if (options.logRequests) logRequests(app.server, options.log);
  const uninstall = installProcessGuard(options.log);
  try {
    await app.listen({ host: addr.host, port: addr.port });
  } catch (err) {
    uninstall();
    await app.close();
    throw listenError(err, addr);
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
