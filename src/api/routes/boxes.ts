/** `/v1/projects/{project}/boxes…` */
import { Type } from '@sinclair/typebox';
import { InvalidArgumentError } from '../../core/errors.js';
import { parseBoxName, parseProjectName, parseTag } from '../../core/names.js';
import { boxKey, pageOf } from '../../core/paging.js';
import type { ZomgService } from '../../core/service.js';
import { BoxListSchema, BoxSchema, CreateBoxBodySchema, PageQuery, UpdateBoxBodySchema } from '../../core/wire.js';
import { BoxParams, NoContent, ProjectOrAllParams, ProjectParams, responses } from '../schemas.js';
import type { Paging, TypedApp } from '../typed.js';
import { boxRef } from './params.js';

const tags = ['boxes'];

export async function boxRoutes(app: TypedApp, service: ZomgService, paging: Paging, policy: { allowPrivileged: boolean } = { allowPrivileged: false }): Promise<void> {
  app.get(
    '/v1/projects/:project/boxes',
    {
      schema: {
        operationId: 'listBoxes',
        summary: 'List boxes (project "-" = every project), a page at a time',
        tags,
        params: ProjectOrAllParams,
        querystring: Type.Object(
          {
            prefix: Type.Optional(Type.String({ description: 'only boxes whose name starts with this' })),
            tag: Type.Optional(Type.Union([Type.String(), Type.Array(Type.String())], { description: 'key=value; repeat for several (all must match)' })),
            ...PageQuery,
          },
          { additionalProperties: false },
        ),
        response: responses({ 200: Type.Ref(BoxListSchema) }),
      },
    },
    async (request) => {
      const { project } = request.params;
      const filter: Record<string, string> = {};
      const raw = request.query.tag;
      for (const t of raw === undefined ? [] : Array.isArray(raw) ? raw : [raw]) {
        const [k, v] = parseTag(t);
        filter[k] = v;
      }
      const maxResults = request.query.max_results ?? paging.pageSize;
      // One more than the page: whether there is a next page.
      const boxes = await service.listBoxes({
        ...(project === '-' ? {} : { project: parseProjectName(project) }),
        ...(request.query.prefix !== undefined ? { prefix: request.query.prefix } : {}),
        tags: filter,
        maxResults: maxResults + 1,
        ...(request.query.page_token !== undefined ? { pageToken: request.query.page_token } : {}),
      });
      const page = pageOf(boxes, boxKey, { maxResults });
      return { boxes: page.items, ...(page.nextPageToken !== undefined ? { next_page_token: page.nextPageToken } : {}) };
    },
  );

  app.post(
    '/v1/projects/:project/boxes',
    {
      schema: {
        operationId: 'createBox',
        summary: 'Create a box from a base (or fork another box) and start it',
        tags,
        params: ProjectParams,
        body: CreateBoxBodySchema,
        response: responses({ 201: Type.Ref(BoxSchema) }, 404, 409, 422, 507),
      },
    },
    async (request, reply) => {
      const project = parseProjectName(request.params.project);
      const body = request.body;
      if (body.privileged === true && !policy.allowPrivileged) {
        throw new InvalidArgumentError('this server does not allow privileged boxes', {
          code: 'ZOMG_PRIVILEGED_NOT_ALLOWED',
          hint: 'create the box without privileged, or run the server with `zomg serve --allow-privileged`',
        });
      }
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
          ...(body.privileged !== undefined ? { privileged: body.privileged } : {}),
          ...(body.cpus !== undefined ? { cpus: body.cpus } : {}),
          ...(body.memory !== undefined ? { memory: body.memory } : {}),
          ...(body.pids !== undefined ? { pids: body.pids } : {}),
          ...(body.publish !== undefined ? { publish: body.publish } : {}),
          ...(body.data_mounts ? { dataMounts: body.data_mounts } : {}),
        },
      );
      return reply.status(201).send(box);
    },
  );

  app.get(
    '/v1/projects/:project/boxes/:name',
    { schema: { operationId: 'getBox', summary: 'Get a box', tags, params: BoxParams, response: responses({ 200: Type.Ref(BoxSchema) }, 404) } },
    async (request) => service.getBox(boxRef(request.params)),
  );

  app.put(
    '/v1/projects/:project/boxes/:name',
    {
      schema: {
        operationId: 'updateBox',
        summary: "Replace a box's tags and/or environment",
        tags,
        params: BoxParams,
        body: UpdateBoxBodySchema,
        response: responses({ 200: Type.Ref(BoxSchema) }, 404, 409),
      },
    },
    async (request) => {
      const ref = boxRef(request.params);
      if (request.body.tags === undefined && request.body.environment === undefined) {
        throw new InvalidArgumentError('nothing to update: pass tags and/or environment');
      }
      return service.updateBox(ref, request.body);
    },
  );

  app.delete(
    '/v1/projects/:project/boxes/:name',
    { schema: { operationId: 'deleteBox', summary: 'Stop and delete a box with its snapshots', tags, params: BoxParams, response: responses({ 204: NoContent }, 404, 409) } },
    async (request, reply) => {
      await service.deleteBox(boxRef(request.params));
      return reply.status(204).send(null);
    },
  );
}
