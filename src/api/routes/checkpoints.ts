/** `/v1/projects/{project}/boxes/{name}/checkpoints…` — box snapshots. */
import { Type } from '@sinclair/typebox';
import { snapshotKey, pageOf } from '../../core/paging.js';
import type { ZomgService } from '../../core/service.js';
import { CheckpointListSchema, CheckpointSchema, CreateCheckpointBodySchema, PageQuery } from '../../core/wire.js';
import { BoxParams, CheckpointParams, NoContent, noBody, responses } from '../schemas.js';
import type { Paging, TypedApp } from '../typed.js';
import { boxRef } from './params.js';

const tags = ['checkpoints'];

export async function checkpointRoutes(app: TypedApp, service: ZomgService, paging: Paging): Promise<void> {
  const base = '/v1/projects/:project/boxes/:name/checkpoints';
  app.get(
    base,
    {
      schema: {
        operationId: 'listCheckpoints',
        summary: "List a box's checkpoints (snapshots), oldest first, a page at a time",
        tags,
        params: BoxParams,
        querystring: Type.Object({ ...PageQuery }, { additionalProperties: false }),
        response: responses({ 200: Type.Ref(CheckpointListSchema) }, 404),
      },
    },
    async (request) => {
      const maxResults = request.query.max_results ?? paging.pageSize;
      const all = await service.listSnapshots(boxRef(request.params), {
        maxResults: maxResults + 1,
        ...(request.query.page_token !== undefined ? { pageToken: request.query.page_token } : {}),
      });
      const page = pageOf(all, snapshotKey, { maxResults });
      return { checkpoints: page.items, ...(page.nextPageToken !== undefined ? { next_page_token: page.nextPageToken } : {}) };
    },
  );

  app.post(
    base,
    {
      schema: {
        operationId: 'createCheckpoint',
        summary: "Snapshot a box's root (named v0, v1, … unless named)",
        tags,
        params: BoxParams,
        body: Type.Optional(CreateCheckpointBodySchema),
        response: responses({ 201: Type.Ref(CheckpointSchema) }, 404, 409, 507),
      },
    },
    async (request, reply) => {
      const ref = boxRef(request.params);
      const body = request.body ?? {};
      const cp = await service.createSnapshot(ref, {
        ...(body.name !== undefined ? { name: body.name } : {}),
        ...(body.description !== undefined ? { description: body.description } : {}),
      });
      return reply.status(201).send(cp);
    },
  );

  app.get(
    `${base}/:checkpoint`,
    { schema: { operationId: 'getCheckpoint', summary: 'Get a checkpoint', tags, params: CheckpointParams, response: responses({ 200: Type.Ref(CheckpointSchema) }, 404) } },
    async (request) => service.getSnapshot(boxRef(request.params), request.params.checkpoint),
  );

  app.delete(
    `${base}/:checkpoint`,
    { schema: { operationId: 'deleteCheckpoint', summary: 'Delete a checkpoint', tags, params: CheckpointParams, response: responses({ 204: NoContent }, 404, 409) } },
    async (request, reply) => {
      await service.deleteSnapshot(boxRef(request.params), request.params.checkpoint);
      return reply.status(204).send(null);
    },
  );

  app.post(
    `${base}/:checkpoint/restore`,
    {
      preValidation: noBody,
      schema: {
        operationId: 'restoreCheckpoint',
        summary: "Replace the box's root with the checkpoint, atomically (every checkpoint survives)",
        tags,
        params: CheckpointParams,
        response: responses({ 200: Type.Ref(CheckpointSchema) }, 404, 409, 507),
      },
    },
    async (request) => service.restoreSnapshot(boxRef(request.params), request.params.checkpoint),
  );
}
