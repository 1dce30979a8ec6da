/**
 * DNS-rebinding protection for a server without a token (`zomg serve --no-auth`): a web page
 * on another site can make a browser send requests to 127.0.0.1 under a name the attacker
 * controls, so requests are answered only when their Host (and Origin, when a browser sends
 * one) name the loopback address the server listens on. WebSocket upgrades go through the
 * same check, so a page elsewhere cannot open an exec socket.
 */
import type { FastifyRequest } from 'fastify';
import { ForbiddenError } from '../core/errors.js';
import { quote } from '../core/input.js';

const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '[::1]'];

/** The `host:port` values a request may name for a server listening on loopback `host`, port `port`. */
export function allowedHosts(host: string, port: number): Set<string> {
  const names = new Set([...LOOPBACK_NAMES, host.includes(':') ? `[${host}]` : host]);
  return new Set([...names].flatMap((name) => [`${name}:${port}`, ...(port === 80 ? [name] : [])]));
}

/** Throws ZOMG_FORBIDDEN_ORIGIN unless the request's Host and Origin are among `hosts`. */
export function checkHostAndOrigin(request: FastifyRequest, hosts: Set<string>): void {
  const host = (request.headers.host ?? '').toLowerCase();
  if (!hosts.has(host)) {
    throw new ForbiddenError('ZOMG_FORBIDDEN_ORIGIN', `refusing a request for host ${quote(host)}: this server (started with --no-auth) answers only to ${[...hosts][0]}`, {
      hint: 'address the server by its loopback address, or run it with a token',
    });
  }
  const origin = request.headers.origin;
  if (origin === undefined) return;
  let originHost: string | undefined;
  try {
    const url = new URL(origin);
    originHost = (url.protocol === 'http:' || url.protocol === 'https:') ? url.host.toLowerCase() : undefined;
  } catch {
    originHost = undefined;
  }
  if (originHost === undefined || !hosts.has(originHost)) {
    throw new ForbiddenError('ZOMG_FORBIDDEN_ORIGIN', `refusing a request from origin ${quote(origin)}: a server started with --no-auth answers only to pages on its own loopback address`, {
      hint: 'run the server with a token to use it from elsewhere',
    });
  }
}
