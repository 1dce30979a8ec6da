/**
 * Every error leaves the server as `{statusCode, code, error, message, hint?}`. The status
 * comes from one table (core HTTP_STATUS) keyed by error kind; a 500 never echoes internals.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { HTTP_STATUS, isZomgError } from '../core/errors.js';

const REASON: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Entity',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  507: 'Insufficient Storage',
};

export interface ErrorBody {
  statusCode: number;
  code: string;
  error: string;
  message: string;
  hint?: string;
}

/** Codes for the framework's own client errors (body parsing, validation, size). */
function frameworkCode(err: FastifyError, status: number): string {
  if (status === 413) return 'ZOMG_TOO_LARGE';
  if (status === 415) return 'ZOMG_UNSUPPORTED_MEDIA_TYPE';
  if (err.validation) return 'ZOMG_INVALID_ARGUMENT';
  if (err.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err instanceof SyntaxError) return 'ZOMG_INVALID_JSON';
  if (err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') return 'ZOMG_INVALID_JSON';
  return 'ZOMG_BAD_REQUEST';
}

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
  const fe = err as FastifyError;
  const status = typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500 ? fe.statusCode : 500;
  if (status === 500) return { statusCode: 500, code: 'ZOMG_INTERNAL', error: REASON[500] as string, message: 'internal error' };
  return { statusCode: status, code: frameworkCode(fe, status), error: REASON[status] ?? 'Error', message: fe.message };
}

export function errorHandler(err: unknown, request: FastifyRequest, reply: FastifyReply): void {
  const body = toErrorBody(err);
  if (body.statusCode >= 500) request.log.error({ err }, 'request failed');
  void reply.status(body.statusCode).send(body);
}
