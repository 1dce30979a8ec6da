/** `GET …/boxes/{name}/files?path=` (a tar stream out of the box) and `PUT …/files?path=[&into=true]` (a tar stream in). */
import type { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { InvalidArgumentError } from '../../core/errors.js';
import type { ZomgService } from '../../core/service.js';
import { type BoxParams, boxParams, boxRef, str } from './params.js';
import { streamReply } from './streams.js';

const TAR = 'application/x-tar';

const getQuery = { type: 'object', required: ['path'], additionalProperties: false, properties: { path: str } } as const;
const putQuery = { type: 'object', required: ['path'], additionalProperties: false, properties: { path: str, into: { type: 'boolean' } } } as const;

export async function fileRoutes(app: FastifyInstance, service: ZomgService): Promise<void> {
  const base = '/v1/projects/:project/boxes/:name/files';

  app.get<{ Params: BoxParams; Querystring: { path: string } }>(
    base,
    { schema: { params: boxParams, querystring: getQuery, produces: [TAR] } },
    async (request, reply) => {
      const ref = boxRef(request.params);
      return streamReply(request, reply, TAR, (out, signal) => service.copyFromBox(ref, request.query.path, out, { signal }));
    },
  );

  app.put<{ Params: BoxParams; Querystring: { path: string; into?: boolean } }>(
    base,
    { schema: { params: boxParams, querystring: putQuery, consumes: [TAR] } },
    async (request, reply) => {
      const ref = boxRef(request.params);
      const body = request.body as Readable | undefined;
      if (!body || typeof (body as { pipe?: unknown }).pipe !== 'function') {
        throw new InvalidArgumentError('send a tar stream in the request body with Content-Type: application/x-tar', { code: 'ZOMG_INVALID_UPLOAD' });
      }
      const abort = new AbortController();
      reply.raw.on('close', () => {
        if (!reply.raw.writableFinished) abort.abort();
      });
      await service.copyToBox(ref, request.query.path, body, { ...(request.query.into ? { into: true } : {}), signal: abort.signal });
      return reply.status(204).send();
    },
  );
}
