/** `GET …/boxes/{name}/files?path=` (a tar stream out of the box) and `PUT …/files?path=[&into=true]` (a tar stream in). */
import type { Readable } from 'node:stream';
import { Type } from '@sinclair/typebox';
import { InvalidArgumentError } from '../../core/errors.js';
import type { ZomgService } from '../../core/service.js';
import { BoxParams, NoContent, Streamed, responses } from '../schemas.js';
import type { TypedApp } from '../typed.js';
import { boxRef } from './params.js';
import { streamReply } from './streams.js';

const TAR = 'application/x-tar';
const tags = ['files'];
const Path = Type.String({ description: 'an absolute path inside the box' });

export async function fileRoutes(app: TypedApp, service: ZomgService): Promise<void> {
  const base = '/v1/projects/:project/boxes/:name/files';

  app.get(
    base,
    {
      schema: {
        operationId: 'copyFromBox',
        summary: 'A tar stream of a path in the box (zomg cp out)',
        tags,
        params: BoxParams,
        querystring: Type.Object({ path: Path }, { additionalProperties: false }),
        response: responses({ 200: Streamed(TAR, Type.String({ format: 'binary', description: 'a tar stream of the path' })) }, 404, 409),
      },
    },
    async (request, reply) => {
      const ref = boxRef(request.params);
      return streamReply(request, reply, TAR, (out, signal) => service.copyFromBox(ref, request.query.path, out, { signal }));
    },
  );

  app.put(
    base,
    {
      schema: {
        operationId: 'copyToBox',
        summary: 'Extract a tar stream at a path in the box (zomg cp in)',
        description: 'Send the tar stream as the request body with Content-Type application/x-tar.',
        tags,
        params: BoxParams,
        querystring: Type.Object(
          { path: Path, into: Type.Optional(Type.Boolean({ description: 'path is an existing directory and the archive is extracted into it as it is; without it, a directory receives the top entry under its own name and any other path names the copy' })) },
          { additionalProperties: false },
        ),
        consumes: [TAR],
        response: responses({ 204: NoContent }, 404, 409, 422, 507),
      },
    },
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
      return reply.status(204).send(null);
    },
  );
}
