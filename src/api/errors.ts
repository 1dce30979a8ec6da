/**
 * Every error leaves the server as `{statusCode, code, error, message, hint?}` (the `Error`
 * schema of core/wire.ts). The status comes from one table (core HTTP_STATUS) keyed by error
 * kind, for zomg's own errors and the framework's alike; a 500 never echoes internals.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { ERROR_CATALOGUE, type ErrorCode } from '../core/error-codes.js';
import { HTTP_STATUS, isZomgError } from '../core/errors.js';
import type { ErrorBody } from '../core/wire.js';

export type { ErrorBody } from '../core/wire.js';

const REASON: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  409: 'Conflict',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Entity',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  507: 'Insufficient Storage',
};

/** The code for one of the framework's own client errors (body parsing, validation, size, media type). */
function frameworkCode(err: FastifyError): ErrorCode {
  if (err.statusCode === 413 || err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return 'ZOMG_TOO_LARGE';
  if (err.statusCode === 415 || err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return 'ZOMG_UNSUPPORTED_MEDIA_TYPE';
  if (err.validation) return 'ZOMG_INVALID_ARGUMENT';
  if (err.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' || err instanceof SyntaxError) return 'ZOMG_INVALID_JSON';
  return 'ZOMG_BAD_REQUEST';
}

const body = (code: ErrorCode, message: string, hint?: string): ErrorBody => {
  const statusCode = HTTP_STATUS[ERROR_CATALOGUE[code].kind];
  const internal = statusCode >= 500 && ERROR_CATALOGUE[code].kind === 'internal';
  return {
    statusCode,
    code,
    error: REASON[statusCode] ?? 'Error',
    message: internal ? 'internal error' : message,
    ...(hint !== undefined && !internal ? { hint } : {}),
  };
};

/** The wire form of any error: zomg's own, the framework's client errors, or (as a bare 500) anything else. */
export function toErrorBody(err: unknown): ErrorBody {
  if (isZomgError(err)) {
    const statusCode = HTTP_STATUS[err.kind];
    const internal = err.kind === 'internal';
    return {
      statusCode,
      code: err.code,
      error: REASON[statusCode] ?? 'Error',
      message: internal ? 'internal error' : err.message,
      ...(err.hint !== undefined && !internal ? { hint: err.hint } : {}),
    };
  }
  const fe = err as FastifyError | undefined;
  const status = typeof fe?.statusCode === 'number' ? fe.statusCode : 500;
  if (fe === undefined || status < 400 || status >= 500) return body('ZOMG_INTERNAL', 'internal error');
  // The framework's messages name the field and the rule; a few quote the URL, so they are cut short.
  return body(frameworkCode(fe), fe.message.length > 200 ? `${fe.message.slice(0, 200)}…` : fe.message);
}

export function errorHandler(err: unknown, request: FastifyRequest, reply: FastifyReply): void {
  const out = toErrorBody(err);
  if (out.statusCode >= 500) request.log.error({ err }, 'request failed');
  void reply.status(out.statusCode).send(out);
}
