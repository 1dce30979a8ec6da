/**
 * Route-level schema pieces: path parameters, the error responses every operation declares,
 * and the registration of the shared shapes (core/wire.ts) that become OpenAPI components.
 */
import { type TSchema, Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { InvalidArgumentError } from '../core/errors.js';
import { NAME_RULE } from '../core/names.js';
import { ErrorBodySchema, SHARED_SCHEMAS } from '../core/wire.js';

const name = (what: string) => Type.String({ description: `the ${what}: ${NAME_RULE}` });

export const ProjectParams = Type.Object({ project: name('project') });
export const ProjectOrAllParams = Type.Object({ project: Type.String({ description: `the project (${NAME_RULE}), or "-" for every project` }) });
export const BoxParams = Type.Object({ project: name('project'), name: name('box name') });
export const CheckpointParams = Type.Object({ project: name('project'), name: name('box name'), checkpoint: name('checkpoint name') });
export const BaseParams = Type.Object({ name: name('base name') });
export const BaseVersionParams = Type.Object({ name: name('base name'), version: Type.String({ description: 'the exact version name' }) });
export const VolumeParams = Type.Object({ project: name('project'), volume: name('volume name') });
export const VolumeSnapshotParams = Type.Object({ project: name('project'), volume: name('volume name'), snapshot: name('volume snapshot name') });
export const DataMountParams = Type.Object({ project: name('project'), name: name('box name'), volume: Type.String({ description: "the mounted volume, as named in the box's data_mounts" }) });

const ErrorRef = Type.Ref(ErrorBodySchema);

/** Statuses every authenticated operation can answer: bad input, no token, a refused origin, a bug. */
const COMMON = [400, 401, 403, 500] as const;

const REASON: Record<number, string> = {
  101: 'Switching Protocols',
  200: 'OK',
  201: 'Created',
  204: 'No Content',
  400: 'Bad Request: invalid input (ZOMG_INVALID_*, …)',
  401: 'Unauthorized: missing or wrong bearer token',
  403: 'Forbidden: a --no-auth server refused the Host or Origin',
  404: 'Not Found',
  409: 'Conflict: exists already, busy, or in the wrong state',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable: the input parses but cannot be used',
  500: 'Internal error, or an external program failed',
  507: 'Insufficient Storage: the pool is full',
};

/** `schema` with a description (OpenAPI needs one per response), keeping its own when it has one. */
const described = (status: number, schema: TSchema): TSchema =>
  typeof schema.description === 'string' ? schema : ({ ...schema, description: REASON[status] ?? String(status) } as TSchema);

/** The response map of an operation: its success shapes, then the error shape for `COMMON` and each extra status. */
export function responses<T extends Record<number, TSchema>>(ok: T, ...errorStatuses: number[]): T & Record<number, TSchema> {
  const out: Record<number, TSchema> = {};
  for (const [status, schema] of Object.entries(ok)) out[Number(status)] = described(Number(status), schema);
  for (const status of [...COMMON, ...errorStatuses]) out[status] = described(status, ErrorRef);
  return out as T & Record<number, TSchema>;
}

/** For routes that take no body: one sent anyway (but `{}`) is refused rather than ignored. */
export async function noBody(request: FastifyRequest): Promise<void> {
  const body = request.body;
  if (body === undefined || body === null) return;
  if (typeof body === 'object' && !Array.isArray(body) && Object.keys(body).length === 0) return;
  throw new InvalidArgumentError('this operation takes no request body', { hint: 'send no body (or {})' });
}

/**
 * A success answer that is a stream of `mediaType` rather than JSON (a tar, a log): documented
 * under its own media type while the route's errors stay JSON. A stream is sent as it is, never
 * serialized, so `schema` only describes it.
 */
export const Streamed = (mediaType: string, schema: TSchema): TSchema =>
  Type.Unsafe<string>({ description: schema.description ?? mediaType, content: { [mediaType]: { schema } } });

/** An empty success answer (204). */
export const NoContent = Type.Null({ description: 'No Content' });

/** Registers the shared shapes, so routes can `$ref` them and the OpenAPI document lists them as components. */
export function addSharedSchemas(app: FastifyInstance): void {
  for (const schema of SHARED_SCHEMAS) app.addSchema(schema);
}
