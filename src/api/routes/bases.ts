/** `/v1/bases…` and `/v1/projects/{project}/bases`. */
import type { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { InvalidArgumentError, NotFoundError } from '../../core/errors.js';
import { parseBaseName } from '../../core/names.js';
import type { ZomgService } from '../../core/service.js';
import { str } from './params.js';

const nameParams = { type: 'object', required: ['name'], properties: { name: str } } as const;

export async function baseRoutes(app: FastifyInstance, service: ZomgService): Promise<void> {
  app.get('/v1/bases', async () => ({ bases: await service.listBases() }));

  app.get<{ Params: { name: string }; Querystring: { tag?: string } }>(
    '/v1/bases/:name',
    { schema: { params: nameParams, querystring: { type: 'object', properties: { tag: str } } } },
    async (request) => service.inspectBase(request.params.name, request.query.tag !== undefined ? { tag: request.query.tag } : {}),
  );

  app.post<{ Params: { name: string }; Querystring: { parent?: string } }>(
    '/v1/bases/:name/versions',
    { schema: { params: nameParams, querystring: { type: 'object', properties: { parent: str } } } },
    async (request, reply) => {
      const name = parseBaseName(request.params.name);
      const body = request.body as Readable | undefined;
      if (!body || typeof (body as { pipe?: unknown }).pipe !== 'function') {
        throw new InvalidArgumentError('send the rootfs tarball as the request body with Content-Type: application/octet-stream', { code: 'ZOMG_INVALID_UPLOAD' });
      }
      const length = Number(request.headers['content-length']);
      const version = await service.importBase(name, body, {
        ...(request.query.parent !== undefined ? { parent: request.query.parent } : {}),
        ...(Number.isFinite(length) && length > 0 ? { totalBytes: length } : {}),
      });
      return reply.status(201).send(version);
    },
  );

  app.post<{ Params: { name: string }; Body: { update?: boolean } | undefined }>(
    '/v1/bases/:name/install',
    { schema: { params: nameParams, body: { type: 'object', additionalProperties: false, properties: { update: { type: 'boolean' } } } } },
    async (request, reply) => {
      const outcome = await service.installBase(request.params.name, { update: request.body?.update ?? false });
      return reply.status(outcome.status === 'installed' ? 201 : 200).send(outcome);
    },
  );

  app.delete<{ Params: { name: string } }>('/v1/bases/:name', { schema: { params: nameParams } }, async (request, reply) => {
    await service.deleteBaseAlias(request.params.name);
    return reply.status(204).send();
  });

  app.delete<{ Params: { name: string; version: string } }>(
    '/v1/bases/:name/versions/:version',
    { schema: { params: { type: 'object', required: ['name', 'version'], properties: { name: str, version: str } } } },
    async (request, reply) => {
      // The version must belong to the base the path names.
      const details = await service.inspectBase(request.params.name);
      if (!details.versions.some((v) => v.name === request.params.version)) {
        throw new NotFoundError('ZOMG_VERSION_NOT_FOUND', `base "${request.params.name}" has no version "${request.params.version}"`, {
          hint: `run \`zomg base inspect ${request.params.name}\``,
        });
      }
      await service.deleteBaseVersion(request.params.version);
      return reply.status(204).send();
    },
  );
}
