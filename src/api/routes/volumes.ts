/** `/v1/projects/{project}/volumes…` and `…/backups…` — data volumes, their snapshots, diffs and backups (SPEC §7). */
import { Type } from '@sinclair/typebox';
import { type ProjectName, parseProjectName } from '../../core/names.js';
import type { ZomgService } from '../../core/service.js';
import { type VolumeRef, parseVolumeName, parseVolumeRef } from '../../core/volumes.js';
import {
  BoxSchema,
  CreateBackupBodySchema,
  CreateVolumeBodySchema,
  CreateVolumeSnapshotBodySchema,
  DataMountSpecSchema,
  FileDiffSchema,
  RestoreBackupBodySchema,
  VolumeBackupListSchema,
  VolumeBackupSchema,
  VolumeDiffStatusSchema,
  VolumeListSchema,
  VolumeSchema,
  VolumeSnapshotListSchema,
  VolumeSnapshotSchema,
} from '../../core/wire.js';
import { NDJSON } from '../../core/wire-constants.js';
import { ndjsonDescription, sendDiffNdjson, wantsNdjson } from '../diff-stream.js';
import { BoxParams, DataMountParams, NoContent, ProjectOrAllParams, ProjectParams, VolumeParams, VolumeSnapshotParams, responses } from '../schemas.js';
import type { TypedApp } from '../typed.js';
import { boxRef } from './params.js';

const tags = ['volumes'];

const volRef = (p: { project: string; volume: string }): VolumeRef => ({ project: parseProjectName(p.project), name: parseVolumeName(p.volume) });

export async function volumeRoutes(app: TypedApp, service: ZomgService): Promise<void> {
  const base = '/v1/projects/:project/volumes';

  app.get(
    base,
    {
      schema: {
        operationId: 'listVolumes',
        summary: 'The data volumes of a project (project "-" = every project)',
        tags,
        params: ProjectOrAllParams,
        response: responses({ 200: Type.Ref(VolumeListSchema) }),
      },
    },
    async (request) => {
      const { project } = request.params;
      return { volumes: await service.listVolumes(project === '-' ? {} : { project: parseProjectName(project) }) };
    },
  );

  app.post(
    base,
    {
      schema: {
        operationId: 'createVolume',
        summary: 'Create a data volume (empty, or an O(1) clone of another or of its snapshot)',
        tags,
        params: ProjectParams,
        body: CreateVolumeBodySchema,
        response: responses({ 201: Type.Ref(VolumeSchema) }, 404, 409, 507),
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

  app.get(
    `${base}/:volume`,
    { schema: { operationId: 'getVolume', summary: 'One data volume', tags, params: VolumeParams, response: responses({ 200: Type.Ref(VolumeSchema) }, 404) } },
    async (request) => service.getVolume(volRef(request.params)),
  );

  app.delete(
    `${base}/:volume`,
    {
      schema: {
        operationId: 'deleteVolume',
        summary: 'Delete a data volume (refused while mounted)',
        tags,
        params: VolumeParams,
        response: responses({ 204: NoContent }, 404, 409),
      },
    },
    async (request, reply) => {
      await service.deleteVolume(volRef(request.params));
      return reply.status(204).send(null);
    },
  );

  // snapshots
  app.get(
    `${base}/:volume/snapshots`,
    {
      schema: {
        operationId: 'listVolumeSnapshots',
        summary: 'The snapshots of a data volume, oldest first',
        tags,
        params: VolumeParams,
        response: responses({ 200: Type.Ref(VolumeSnapshotListSchema) }, 404),
      },
    },
    async (request) => ({ snapshots: await service.listVolumeSnapshots(volRef(request.params)) }),
  );

  app.post(
    `${base}/:volume/snapshots`,
    {
      schema: {
        operationId: 'createVolumeSnapshot',
        summary: 'A read-only snapshot of a data volume (vN unless named)',
        tags,
        params: VolumeParams,
        body: CreateVolumeSnapshotBodySchema,
        response: responses({ 201: Type.Ref(VolumeSnapshotSchema) }, 404, 409, 507),
      },
    },
    async (request, reply) => {
      const body = request.body;
      const snap = await service.createVolumeSnapshot(volRef(request.params), {
        ...(body.name !== undefined ? { name: body.name } : {}),
        ...(body.description !== undefined ? { description: body.description } : {}),
      });
      return reply.status(201).send(snap);
    },
  );

  app.delete(
    `${base}/:volume/snapshots/:snapshot`,
    {
      schema: {
        operationId: 'deleteVolumeSnapshot',
        summary: 'Delete a snapshot of a data volume',
        tags,
        params: VolumeSnapshotParams,
        response: responses({ 204: NoContent }, 404, 409),
      },
    },
    async (request, reply) => {
      await service.deleteVolumeSnapshot(volRef(request.params), request.params.snapshot);
      return reply.status(204).send(null);
    },
  );

  app.post(
    `${base}/:volume/snapshots/:snapshot/restore`,
    {
      schema: {
        operationId: 'restoreVolumeSnapshot',
        summary: 'Replace a data volume with its snapshot, atomically',
        tags,
        params: VolumeSnapshotParams,
        response: responses({ 200: Type.Ref(VolumeSnapshotSchema) }, 404, 409, 507),
      },
    },
    async (request) => service.restoreVolumeSnapshot(volRef(request.params), request.params.snapshot),
  );

  // diffs
  app.get(
    `${base}/:volume/diff`,
    {
      schema: {
        operationId: 'diffVolume',
        summary: 'What changed in a data volume since a snapshot (default: the latest)',
        description: ndjsonDescription('{volume, project, against, to, method}'),
        produces: ['application/json', NDJSON],
        tags,
        params: VolumeParams,
        querystring: Type.Object(
          {
            against: Type.Optional(Type.String({ description: 'the snapshot to compare against' })),
            to: Type.Optional(Type.String({ description: 'compare to this snapshot instead of the live volume' })),
          },
          { additionalProperties: false },
        ),
        response: responses({ 200: Type.Ref(VolumeDiffStatusSchema) }, 404, 409),
      },
    },
    async (request, reply) => {
      const ref = volRef(request.params);
      const options = {
        ...(request.query.against !== undefined ? { against: request.query.against } : {}),
        ...(request.query.to !== undefined ? { to: request.query.to } : {}),
      };
      // NDJSON, written as the diff is verified, for clients that ask; JSON for the others.
      if (wantsNdjson(request)) return sendDiffNdjson((sink, signal) => service.volumeDiffStatusStream(ref, sink, { ...options, signal }), reply);
      return service.volumeDiffStatus(ref, options);
    },
  );

  app.get(
    `${base}/:volume/diff/file`,
    {
      schema: {
        operationId: 'diffVolumeFile',
        summary: 'How one file of a data volume changed since a snapshot',
        tags,
        params: VolumeParams,
        querystring: Type.Object(
          {
            path: Type.String({ description: 'an absolute path inside the volume' }),
            against: Type.Optional(Type.String({ description: 'the snapshot to compare against' })),
          },
          { additionalProperties: false },
        ),
        response: responses({ 200: Type.Ref(FileDiffSchema) }, 404, 409, 413),
      },
    },
    async (request) => service.volumeDiffFile(volRef(request.params), request.query.path, request.query.against !== undefined ? { against: request.query.against } : {}),
  );

  // backups (file:// targets are directories on the server's host)
  app.post(
    `${base}/:volume/backups`,
    {
      schema: {
        operationId: 'createVolumeBackup',
        summary: 'Back a data volume up to a target (full, then incremental)',
        tags,
        params: VolumeParams,
        body: CreateBackupBodySchema,
        response: responses({ 201: Type.Ref(VolumeBackupSchema) }, 404, 409, 507),
      },
    },
    async (request, reply) => {
      const backup = await service.createBackup(volRef(request.params), { to: request.body.to, ...(request.body.name !== undefined ? { name: request.body.name } : {}) });
      return reply.status(201).send(backup);
    },
  );

  app.get(
    '/v1/projects/:project/backups',
    {
      schema: {
        operationId: 'listVolumeBackups',
        summary: 'The backups at a target, read from its manifests (project "-" = every project)',
        tags,
        params: ProjectOrAllParams,
        querystring: Type.Object(
          {
            from: Type.String({ description: 'the target URL, e.g. file:///srv/backups' }),
            volume: Type.Optional(Type.String({ description: 'only the backups of this volume' })),
          },
          { additionalProperties: false },
        ),
        response: responses({ 200: Type.Ref(VolumeBackupListSchema) }, 404, 422),
      },
    },
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

  app.post(
    '/v1/projects/:project/backups/restore',
    {
      schema: {
        operationId: 'restoreVolumeBackup',
        summary: 'Restore a backup chain into a new data volume (verified by sha256)',
        tags,
        params: ProjectParams,
        body: RestoreBackupBodySchema,
        response: responses({ 201: Type.Ref(VolumeSchema) }, 404, 409, 422, 507),
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
  app.post(
    '/v1/projects/:project/boxes/:name/data-mounts',
    {
      schema: {
        operationId: 'attachVolume',
        summary: 'Mount a data volume in a stopped box',
        tags,
        params: BoxParams,
        body: DataMountSpecSchema,
        response: responses({ 200: Type.Ref(BoxSchema) }, 404, 409),
      },
    },
    async (request) => service.attachVolume(boxRef(request.params), request.body),
  );

  app.delete(
    '/v1/projects/:project/boxes/:name/data-mounts/:volume',
    {
      schema: {
        operationId: 'detachVolume',
        summary: 'Unmount a data volume from a stopped box',
        tags,
        params: DataMountParams,
        response: responses({ 200: Type.Ref(BoxSchema) }, 404, 409),
      },
    },
    async (request) => service.detachVolume(boxRef(request.params), request.params.volume),
  );
}
