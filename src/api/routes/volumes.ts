/** `/v1/projects/{project}/volumes…` and `…/backups…` — data volumes, their snapshots, diffs and backups (SPEC §7). */
import type { FastifyInstance } from 'fastify';
import { type ProjectName, parseProjectName } from '../../core/names.js';
import type { ZomgService } from '../../core/service.js';
import { type VolumeRef, parseVolumeName, parseVolumeRef } from '../../core/volumes.js';
import { type BoxParams, boxParams, boxRef, str } from './params.js';

interface VolParams {
  project: string;
  volume: string;
}
const volParams = { type: 'object', required: ['project', 'volume'], properties: { project: str, volume: str } } as const;
const snapParams = { type: 'object', required: ['project', 'volume', 'snapshot'], properties: { project: str, volume: str, snapshot: str } } as const;
const projectParams = { type: 'object', required: ['project'], properties: { project: str } } as const;
const volRef = (p: VolParams): VolumeRef => ({ project: parseProjectName(p.project), name: parseVolumeName(p.volume) });
const dataMount = { type: 'object', required: ['name', 'path'], additionalProperties: false, properties: { name: str, path: str, read_only: { type: 'boolean' } } } as const;

export async function volumeRoutes(app: FastifyInstance, service: ZomgService): Promise<void> {
  const base = '/v1/projects/:project/volumes';

  app.get<{ Params: { project: string } }>(base, { schema: { params: projectParams } }, async (request) => {
    const { project } = request.params;
    return { volumes: await service.listVolumes(project === '-' ? {} : { project: parseProjectName(project) }) };
  });

  app.post<{ Params: { project: string }; Body: { name: string; from?: string; from_snapshot?: string } }>(
    base,
    {
      schema: {
        params: projectParams,
        body: { type: 'object', required: ['name'], additionalProperties: false, properties: { name: str, from: str, from_snapshot: str } },
      },
    },
    async (request, reply) => {
      const project = parseProjectName(request.params.project);
      const body = request.body;
      const volume = await service.createVolume(
        { project, name: parseVolumeName(body.name) },
        {
          ...(body.from !== undefined ? { from: parseVolumeRef(body.from, project) } : {}),
          ...(body.from_snapshot !== undefined ? { fromSnapshot: body.from_snapshot } : {}),
        },
      );
      return reply.status(201).send(volume);
    },
  );

  app.get<{ Params: VolParams }>(`${base}/:volume`, { schema: { params: volParams } }, async (request) => service.getVolume(volRef(request.params)));

  app.delete<{ Params: VolParams }>(`${base}/:volume`, { schema: { params: volParams } }, async (request, reply) => {
    await service.deleteVolume(volRef(request.params));
    return reply.status(204).send();
  });

  // snapshots
  app.get<{ Params: VolParams }>(`${base}/:volume/snapshots`, { schema: { params: volParams } }, async (request) => ({
    snapshots: await service.listVolumeSnapshots(volRef(request.params)),
  }));

  app.post<{ Params: VolParams; Body: { name?: string; description?: string } | undefined }>(
    `${base}/:volume/snapshots`,
    { schema: { params: volParams, body: { type: 'object', additionalProperties: false, properties: { name: str, description: str } } } },
    async (request, reply) => {
      const body = request.body ?? {};
      const snap = await service.createVolumeSnapshot(volRef(request.params), {
        ...(body.name !== undefined ? { name: body.name } : {}),
        ...(body.description !== undefined ? { description: body.description } : {}),
      });
      return reply.status(201).send(snap);
    },
  );

  app.delete<{ Params: VolParams & { snapshot: string } }>(`${base}/:volume/snapshots/:snapshot`, { schema: { params: snapParams } }, async (request, reply) => {
    await service.deleteVolumeSnapshot(volRef(request.params), request.params.snapshot);
    return reply.status(204).send();
  });

  app.post<{ Params: VolParams & { snapshot: string } }>(`${base}/:volume/snapshots/:snapshot/restore`, { schema: { params: snapParams } }, async (request) =>
    service.restoreVolumeSnapshot(volRef(request.params), request.params.snapshot),
  );

  // diffs
  app.get<{ Params: VolParams; Querystring: { against?: string; to?: string } }>(
    `${base}/:volume/diff`,
    { schema: { params: volParams, querystring: { type: 'object', additionalProperties: false, properties: { against: str, to: str } } } },
    async (request) =>
      service.volumeDiffStatus(volRef(request.params), {
        ...(request.query.against !== undefined ? { against: request.query.against } : {}),
        ...(request.query.to !== undefined ? { to: request.query.to } : {}),
      }),
  );

  app.get<{ Params: VolParams; Querystring: { path: string; against?: string } }>(
    `${base}/:volume/diff/file`,
    { schema: { params: volParams, querystring: { type: 'object', required: ['path'], additionalProperties: false, properties: { path: str, against: str } } } },
    async (request) => service.volumeDiffFile(volRef(request.params), request.query.path, request.query.against !== undefined ? { against: request.query.against } : {}),
  );

  // backups (file:// targets are directories on the server's host)
  app.post<{ Params: VolParams; Body: { to: string; name?: string } }>(
    `${base}/:volume/backups`,
    { schema: { params: volParams, body: { type: 'object', required: ['to'], additionalProperties: false, properties: { to: str, name: str } } } },
    async (request, reply) => {
      const backup = await service.createBackup(volRef(request.params), { to: request.body.to, ...(request.body.name !== undefined ? { name: request.body.name } : {}) });
      return reply.status(201).send(backup);
    },
  );

  app.get<{ Params: { project: string }; Querystring: { from: string; volume?: string } }>(
    '/v1/projects/:project/backups',
    { schema: { params: projectParams, querystring: { type: 'object', required: ['from'], additionalProperties: false, properties: { from: str, volume: str } } } },
    async (request) => {
      const { project } = request.params;
      return {
        backups: await service.listBackups(request.query.from, {
          ...(project === '-' ? {} : { project: parseProjectName(project) }),
          ...(request.query.volume !== undefined ? { volume: parseVolumeName(request.query.volume) } : {}),
        }),
      };
    },
  );

  app.post<{ Params: { project: string }; Body: { from: string; volume: string; backup?: string; to: string } }>(
    '/v1/projects/:project/backups/restore',
    {
      schema: {
        params: projectParams,
        body: { type: 'object', required: ['from', 'volume', 'to'], additionalProperties: false, properties: { from: str, volume: str, backup: str, to: str } },
      },
    },
    async (request, reply) => {
      const project: ProjectName = parseProjectName(request.params.project);
      const body = request.body;
      const volume = await service.restoreBackup({
        from: body.from,
        source: parseVolumeRef(body.volume, project),
        ...(body.backup !== undefined ? { backup: body.backup } : {}),
        to: { project, name: parseVolumeName(body.to) },
      });
      return reply.status(201).send(volume);
    },
  );

  // attach / detach on a box
  app.post<{ Params: BoxParams; Body: { name: string; path: string; read_only?: boolean } }>(
    '/v1/projects/:project/boxes/:name/data-mounts',
    { schema: { params: boxParams, body: dataMount } },
    async (request) => service.attachVolume(boxRef(request.params), request.body),
  );

  app.delete<{ Params: BoxParams & { volume: string } }>(
    '/v1/projects/:project/boxes/:name/data-mounts/:volume',
    { schema: { params: { type: 'object', required: ['project', 'name', 'volume'], properties: { project: str, name: str, volume: str } } } },
    async (request) => service.detachVolume(boxRef(request.params), request.params.volume),
  );
}

/** The JSON schema of a box's `data_mounts` in a create body. */
export const dataMountsSchema = { type: 'array', items: dataMount } as const;
