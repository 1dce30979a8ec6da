/**
 * The error family every user-reachable failure belongs to. Each class carries a stable
 * `ZOMG_*` code, a message a user can act on and an optional hint. The HTTP status and the
 * CLI exit code are chosen by one table each (api/errors.ts, cli/exit-codes.ts) from the
 * class's `kind`, never at a call site. Programmer errors stay plain `Error`.
 */

export type { ErrorKind } from './error-codes.js';

import type { ErrorCode, ErrorKind } from './error-codes.js';
import { quote } from './quote.js';

export type { ErrorCode } from './error-codes.js';

export interface ZomgErrorOptions {
  hint?: string;
  cause?: unknown;
}

export abstract class ZomgError extends Error {
  abstract readonly kind: ErrorKind;
  readonly code: ErrorCode;
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, options: ZomgErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.hint = options.hint;
  }
}

/** Bad input: a name that breaks a rule, a flag combination, a malformed body. HTTP 400. */
export class InvalidArgumentError extends ZomgError {
  readonly kind = 'invalid' as const;
  constructor(message: string, options: ZomgErrorOptions & { code?: ErrorCode } = {}) {
    super(options.code ?? 'ZOMG_INVALID_ARGUMENT', message, options);
  }
}

/** A CLI usage error (unknown flag, missing argument). Exit 2. */
export class UsageError extends InvalidArgumentError {
  constructor(message: string, options: ZomgErrorOptions = {}) {
    super(message, { ...options, code: 'ZOMG_USAGE' });
  }
}

export class UnauthorizedError extends ZomgError {
  readonly kind = 'unauthorized' as const;
  constructor(message = 'missing or invalid bearer token', options: ZomgErrorOptions = {}) {
    super('ZOMG_UNAUTHORIZED', message, options);
  }
}

/** A request the server refuses whoever sends it (a foreign Origin on a --no-auth server). HTTP 403. */
export class ForbiddenError extends ZomgError {
  readonly kind = 'forbidden' as const;
  constructor(code: ErrorCode, message: string, options: ZomgErrorOptions = {}) {
    super(code, message, options);
  }
}

export class NotFoundError extends ZomgError {
  readonly kind = 'not_found' as const;
  constructor(code: ErrorCode, message: string, options: ZomgErrorOptions = {}) {
    super(code, message, options);
  }
}

export class ConflictError extends ZomgError {
  readonly kind = 'conflict' as const;
  constructor(code: ErrorCode, message: string, options: ZomgErrorOptions = {}) {
    super(code, message, options);
  }
}

export class TooLargeError extends ZomgError {
  readonly kind = 'too_large' as const;
  constructor(code: ErrorCode, message: string, options: ZomgErrorOptions = {}) {
    super(code, message, options);
  }
}

/** Input that parses but cannot be used (a rootfs of another architecture, a corrupt archive). HTTP 422. */
export class UnprocessableError extends ZomgError {
  readonly kind = 'unprocessable' as const;
  constructor(code: ErrorCode, message: string, options: ZomgErrorOptions = {}) {
    super(code, message, options);
  }
}

export class PoolFullError extends ZomgError {
  readonly kind = 'pool_full' as const;
  constructor(message = 'the storage pool is full', options: ZomgErrorOptions = {}) {
    super('ZOMG_POOL_FULL', message, { hint: 'free space by deleting boxes, snapshots or base versions, or grow the pool', ...options });
  }
}

export class UnsupportedError extends ZomgError {
  readonly kind = 'unsupported' as const;
  constructor(code: ErrorCode, message: string, options: ZomgErrorOptions = {}) {
    super(code, message, options);
  }
}

/** An external program failed or is missing. HTTP 500 with this message (it names the tool, not host paths). */
export class ToolError extends ZomgError {
  readonly kind = 'tool' as const;
  constructor(code: ErrorCode, message: string, options: ZomgErrorOptions = {}) {
    super(code, message, options);
  }
}

export const isZomgError = (err: unknown): err is ZomgError => err instanceof ZomgError;

// Frequently thrown errors, named once so their codes and wording stay stable.
export const boxNotFound = (project: string, name: string): NotFoundError =>
  new NotFoundError('ZOMG_BOX_NOT_FOUND', `box "${project}:${name}" not found`, { hint: 'run `zomg list` to see your boxes' });
export const baseNotFound = (ref: string): NotFoundError =>
  new NotFoundError('ZOMG_BASE_NOT_FOUND', `base ${quote(ref)} not found`, { hint: 'run `zomg base list` to see installed bases, or `zomg base install box-base`' });
export const snapshotNotFound = (box: string, name: string): NotFoundError =>
  new NotFoundError('ZOMG_SNAPSHOT_NOT_FOUND', `snapshot ${quote(name)} of box "${box}" not found`, { hint: `run \`zomg snapshot list ${box}\`` });

/**
 * The one wording of a path that does not exist: on this machine (a bad argument,
 * `ZOMG_FILE_NOT_FOUND`) or in a box (`ZOMG_PATH_NOT_FOUND`). `what: 'directory'` names
 * the directory something was to be copied into.
 */
export function fileNotFound(path: string, options: { where?: 'host' | 'box'; what?: 'file' | 'directory'; cause?: unknown } = {}): ZomgError {
  const { where = 'host', what = 'file', cause } = options;
  const message = `${what === 'directory' ? 'no such directory' : 'no such file or directory'}${where === 'box' ? ' in the box' : ''}: ${quote(path)}`;
  const hint = what === 'directory' ? 'create it first, or copy to an existing directory' : where === 'box' ? 'check the path with `zomg exec <box> -- ls -la <dir>`' : 'check the path';
  const withCause = cause === undefined ? {} : { cause };
  return where === 'box'
    ? new NotFoundError('ZOMG_PATH_NOT_FOUND', message, { hint, ...withCause })
    : new InvalidArgumentError(message, { code: 'ZOMG_FILE_NOT_FOUND', hint, ...withCause });
}

/** HTTP status for each error kind — the one table (SPEC §9). */
export const HTTP_STATUS: Record<ErrorKind, number> = {
  invalid: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  too_large: 413,
  unprocessable: 422,
  unsupported_media_type: 415,
  pool_full: 507,
  unsupported: 501,
  tool: 500,
  internal: 500,
};

/**
 * An error of a given kind and code that is not one of the classes above: an error received
 * over HTTP (rebuilt so the remote CLI renders and exits exactly like the local one), or an
 * error re-worded by {@link rewordError}.
 */
export class RemoteError extends ZomgError {
  constructor(
    readonly kind: ErrorKind,
    code: ErrorCode,
    message: string,
    options: ZomgErrorOptions = {},
  ) {
    super(code, message, options);
  }
}

/**
 * A copy of `err` with another message (e.g. host paths redacted), the original kept as its
 * cause. Errors are wrapped, never mutated in place: whoever else holds `err` still sees
 * what it said.
 */
export function rewordError(err: ZomgError, message: string): ZomgError {
  return new RemoteError(err.kind, err.code, message, { cause: err, ...(err.hint !== undefined ? { hint: err.hint } : {}) });
}

/** The kind for an HTTP status; an unknown 5xx (and 500 itself) is `internal`, an unknown 4xx `invalid`. */
function kindOfStatus(status: number): ErrorKind {
  if (status === 500) return 'internal';
  const kind = (Object.keys(HTTP_STATUS) as ErrorKind[]).find((k) => HTTP_STATUS[k] === status);
  return kind ?? (status >= 500 ? 'internal' : 'invalid');
}

/**
 * The error an HTTP answer carries. A code this client does not know (a newer server) is
 * kept as sent: the server is the authority on its codes.
 */
export function errorFromWire(status: number, body: { code?: unknown; message?: unknown; hint?: unknown }): ZomgError {
  const kind = kindOfStatus(status);
  const code = (typeof body.code === 'string' && /^ZOMG_[A-Z0-9_]{1,60}$/.test(body.code) ? body.code : 'ZOMG_INTERNAL') as ErrorCode;
  const message = typeof body.message === 'string' ? body.message : `the server answered ${status}`;
  return new RemoteError(kind, code, message, typeof body.hint === 'string' ? { hint: body.hint } : {});
}
