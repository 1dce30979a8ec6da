/** `/v1/projects/{project}/boxes/{name}/checkpoints…` — box snapshots. */
import type { FastifyInstance } from 'fastify';
import type { ZomgService } from '../../core/service.js';
import { type BoxParams, boxParams, boxRef, str } from './params.js';

const cpParams = { type: 'object', required: ['project', 'name', 'checkpoint'], properties: { project: str, name: str, checkpoint: str } } as const;
type CpParams = BoxParams & { checkpoint: string };

export async function checkpointRoutes(app: FastifyInstance, service: ZomgService): Promise<void> {
  const base = '/v1/projects/:project/boxes/:name/checkpoints';
  app.get<{ Params: BoxParams }>(base, { schema: { params: boxParams } }, async (request) => ({
    checkpoints: await service.listCheckpoints(boxRef(request.params)),
  }));

  app.post<{ Params: BoxParams; Body: { name?: string; description?: string } | undefined }>(
    base,
    { schema: { params: boxParams, body: { type: 'object', additionalProperties: false, properties: { name: str, description: str } } } },
    async (request, reply) => {
      const body = request.body ?? {};
      const cp = await service.createCheckpoint(boxRef(request.params), {
        ...(body.name !== undefined ? { name: body.name } : {}),
        ...(body.description !== undefined ? { description: body.description } : {}),
      });
      return reply.status(201).send(cp);
    },
  );

  app.get<{ Params: CpParams }>(`${base}/:checkpoint`, { schema: { params: cpParams } }, async (request) =>
    service.getCheckpoint(boxRef(request.params), request.params.checkpoint),
  );

  app.delete<{ Params: CpParams }>(`${base}/:checkpoint`, { schema: { params: cpParams } }, async (request, reply) => {
    await service.deleteCheckpoint(boxRef(request.params), request.params.checkpoint);
    return reply.status(204).send();
  });

  app.post<{ Params: CpParams }>(`${base}/:checkpoint/restore`, { schema: { params: cpParams } }, async (request) =>
    service.restoreCheckpoint(boxRef(request.params), request.params.checkpoint),
  );
}
