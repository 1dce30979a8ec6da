/** `/v1/projects/{project}/boxes…` */
import type { FastifyInstance } from 'fastify';
import { InvalidArgumentError } from '../../core/errors.js';
import { parseBoxName, parseProjectName, parseTag } from '../../core/names.js';
import type { ZomgService } from '../../core/service.js';
import { type BoxParams, boxParams, boxRef, str } from './params.js';
import { dataMountsSchema } from './volumes.js';

const stringMap = { type: 'object', additionalProperties: { type: 'string' } } as const;

interface CreateBody {
  name: string;
  base?: string;
  fork?: string;
  tags?: Record<string, string>;
  environment?: Record<string, string>;
  data_mounts?: Array<{ name: string; path: string; read_only?: boolean }>;
}

export async function boxRoutes(app: FastifyInstance, service: ZomgService): Promise<void> {
  app.get<{ Params: { project: string }; Querystring: { prefix?: string; tag?: string | string[]; max_results?: number } }>(
    '/v1/projects/:project/boxes',
    {
      schema: {
        params: { type: 'object', properties: { project: str } },
        querystring: { type: 'object', properties: { prefix: str, tag: { anyOf: [str, { type: 'array', items: str }] }, max_results: { type: 'integer', minimum: 1 } } },
      },
    },
    async (request) => {
      const { project } = request.params;
      const tags: Record<string, string> = {};
      const raw = request.query.tag;
      for (const t of raw === undefined ? [] : Array.isArray(raw) ? raw : [raw]) {
        const [k, v] = parseTag(t);
        tags[k] = v;
      }
      const boxes = await service.listBoxes({
        ...(project === '-' ? {} : { project: parseProjectName(project) }),
        ...(request.query.prefix !== undefined ? { prefix: request.query.prefix } : {}),
        tags,
        ...(request.query.max_results !== undefined ? { maxResults: request.query.max_results } : {}),
      });
      return { boxes };
    },
  );

  app.post<{ Params: { project: string }; Body: CreateBody }>(
    '/v1/projects/:project/boxes',
    {
      schema: {
        params: { type: 'object', properties: { project: str } },
        body: {
          type: 'object',
          required: ['name'],
          additionalProperties: false,
          properties: { name: str, base: str, fork: str, tags: stringMap, environment: stringMap, data_mounts: dataMountsSchema },
        },
      },
    },
    async (request, reply) => {
      const project = parseProjectName(request.params.project);
      const body = request.body;
      let fork;
      if (body.fork !== undefined) {
        const colon = body.fork.indexOf(':');
        fork = colon < 0 ? { project, name: parseBoxName(body.fork) } : { project: parseProjectName(body.fork.slice(0, colon)), name: parseBoxName(body.fork.slice(colon + 1)) };
      }
      const box = await service.createBox(
        { project, name: parseBoxName(body.name) },
        {
          ...(body.base !== undefined ? { base: body.base } : {}),
          ...(fork ? { fork } : {}),
          ...(body.tags ? { tags: body.tags } : {}),
          ...(body.environment ? { environment: body.environment } : {}),
          ...(body.data_mounts ? { dataMounts: body.data_mounts } : {}),
        },
      );
      return reply.status(201).send(box);
    },
  );

  app.get<{ Params: BoxParams }>('/v1/projects/:project/boxes/:name', { schema: { params: boxParams } }, async (request) =>
    service.getBox(boxRef(request.params)),
  );

  app.put<{ Params: BoxParams; Body: { tags?: Record<string, string>; environment?: Record<string, string> } }>(
    '/v1/projects/:project/boxes/:name',
    { schema: { params: boxParams, body: { type: 'object', additionalProperties: false, properties: { tags: stringMap, environment: stringMap } } } },
    async (request) => {
      if (request.body.tags === undefined && request.body.environment === undefined) {
        throw new InvalidArgumentError('nothing to update: pass tags and/or environment');
      }
      return service.updateBox(boxRef(request.params), request.body);
    },
  );

  app.delete<{ Params: BoxParams }>('/v1/projects/:project/boxes/:name', { schema: { params: boxParams } }, async (request, reply) => {
    await service.deleteBox(boxRef(request.params));
    return reply.status(204).send();
  });
}
