/** `/v1/bases…`. */
import type { Readable } from 'node:stream';
import { Type } from '@sinclair/typebox';
import { InvalidArgumentError, NotFoundError } from '../../core/errors.js';
import { quote } from '../../core/input.js';
import { parseBaseName } from '../../core/names.js';
import { baseKey, pageOf } from '../../core/paging.js';
import type { ZomgService } from '../../core/service.js';
import { BaseDetailsSchema, BaseListSchema, BaseVersionSchema, InstallBaseBodySchema, InstallOutcomeSchema, PageQuery } from '../../core/wire.js';
import { BaseParams, BaseVersionParams, NoContent, responses } from '../schemas.js';
import type { Paging, TypedApp } from '../typed.js';

const tags = ['bases'];

export async function baseRoutes(app: TypedApp, service: ZomgService, paging: Paging): Promise<void> {
  app.get(
    '/v1/bases',
    {
      schema: {
        operationId: 'listBases',
        summary: 'List base aliases with the version each points to, a page at a time',
        tags,
        querystring: Type.Object({ ...PageQuery }, { additionalProperties: false }),
        response: responses({ 200: Type.Ref(BaseListSchema) }),
      },
    },
    async (request) => {
      const maxResults = request.query.max_results ?? paging.pageSize;
      const all = await service.listBases({ maxResults: maxResults + 1, ...(request.query.page_token !== undefined ? { pageToken: request.query.page_token } : {}) });
      const page = pageOf(all, baseKey, { maxResults });
      return { bases: page.items, ...(page.nextPageToken !== undefined ? { next_page_token: page.nextPageToken } : {}) };
    },
  );

  app.get(
    '/v1/bases/:name',
    {
      schema: {
        operationId: 'inspectBase',
        summary: 'A base with every version and its provenance',
        tags,
        params: BaseParams,
        querystring: Type.Object({ tag: Type.Optional(Type.String({ description: 'only versions whose script sha256 starts with this' })) }, { additionalProperties: false }),
        response: responses({ 200: Type.Ref(BaseDetailsSchema) }, 404),
      },
    },
    async (request) => service.inspectBase(parseBaseName(request.params.name), request.query.tag !== undefined ? { tag: request.query.tag } : {}),
  );

  app.post(
    '/v1/bases/:name/versions',
    {
      schema: {
        operationId: 'importBase',
        summary: 'Import a rootfs tarball (.tar, .tar.gz, .tar.zst, .tar.xz) streamed as the body as a new version',
        description: 'Send the tarball as the request body with Content-Type application/octet-stream (or application/x-tar, application/gzip, application/zstd, application/x-xz).',
        tags,
        params: BaseParams,
        querystring: Type.Object({ parent: Type.Optional(Type.String({ description: 'extract on top of a snapshot of this base' })) }, { additionalProperties: false }),
        consumes: ['application/octet-stream', 'application/x-tar', 'application/gzip', 'application/zstd', 'application/x-xz'],
        response: responses({ 201: Type.Ref(BaseVersionSchema) }, 404, 409, 413, 415, 422, 507),
      },
    },
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

  app.post(
    '/v1/bases/:name/install',
    {
      schema: {
        operationId: 'installBase',
        summary: 'Install a maintained base (201), or report it up to date (200)',
        tags,
        params: BaseParams,
        body: Type.Optional(InstallBaseBodySchema),
        response: responses({ 200: Type.Ref(InstallOutcomeSchema), 201: Type.Ref(InstallOutcomeSchema) }, 404, 409, 422, 507),
      },
    },
    async (request, reply) => {
      const outcome = await service.installBase(parseBaseName(request.params.name), { update: request.body?.update ?? false });
      return reply.status(outcome.status === 'installed' ? 201 : 200).send(outcome);
    },
  );

  app.delete(
    '/v1/bases/:name',
    { schema: { operationId: 'deleteBaseAlias', summary: 'Delete a base alias (its versions stay)', tags, params: BaseParams, response: responses({ 204: NoContent }, 404, 409) } },
    async (request, reply) => {
      await service.deleteBaseAlias(parseBaseName(request.params.name));
      return reply.status(204).send(null);
    },
  );

  app.delete(
    '/v1/bases/:name/versions/:version',
    {
      schema: {
        operationId: 'deleteBaseVersion',
        summary: 'Delete one version (refused while an alias points to it)',
        tags,
        params: BaseVersionParams,
        response: responses({ 204: NoContent }, 404, 409),
      },
    },
    async (request, reply) => {
      const name = parseBaseName(request.params.name);
      const version = parseBaseName(request.params.version);
      // The version must belong to the base the path names.
      const details = await service.inspectBase(name);
      if (!details.versions.some((v) => v.name === version)) {
        throw new NotFoundError('ZOMG_VERSION_NOT_FOUND', `base "${name}" has no version ${quote(version)}`, { hint: `run \`zomg base inspect ${name}\`` });
      }
      await service.deleteBaseVersion(version);
      return reply.status(204).send(null);
    },
  );
}
