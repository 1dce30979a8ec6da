/**
 * The OpenAPI description of the routes whose schemas are written as plain JSON Schema
 * (terminals, files, processes, logs, data volumes): operationId, summary, tags and the
 * statuses each answers with. Applied when the route is registered (server.ts `onRoute`),
 * so the served document describes every route.
 */
import { type TSchema, Type } from '@sinclair/typebox';
import { responses } from './schemas.js';

interface RouteDoc {
  operationId: string;
  summary: string;
  tags: string[];
  /** The success status and what it carries. */
  ok: Record<number, TSchema>;
  errors: number[];
  description?: string;
  websocket?: boolean;
}

const json = (description: string): TSchema => Type.Unknown({ description });
const none = Type.Null({ description: 'No Content' });

const DOCS: Record<string, RouteDoc> = {
  'GET /v1/projects/:project/boxes/:name/console': {
    operationId: 'openConsole',
    summary: 'A terminal in the running box (WebSocket): a login shell, or a command on a pty',
    tags: ['terminals'],
    ok: { 101: json('Switching Protocols: the WebSocket session') },
    errors: [404, 409],
    websocket: true,
    description:
      'WebSocket (core/console-protocol.ts). The request comes in the query or as the first text message `{command?, user?, cwd?, env?, cols, rows}`; then binary frames carry the bytes both ways; the client sends `{"type":"resize","cols":N,"rows":N}` (1–4096) when its window changes; the server ends with `{"type":"exit","exit_code":N}` or `{"type":"error", statusCode, code, message}`.',
  },
  'GET /v1/projects/:project/boxes/:name/processes': {
    operationId: 'listProcesses',
    summary: "The running box's processes",
    tags: ['terminals'],
    ok: { 200: json('{processes: [{pid, ppid, user, cpu_seconds, command}]}') },
    errors: [404, 409],
  },
  'GET /v1/projects/:project/boxes/:name/logs': {
    operationId: 'readLogs',
    summary: 'The log of a background exec (text/plain; streams while following)',
    tags: ['terminals'],
    ok: { 200: json('the log, as text') },
    errors: [404, 409],
  },
  'GET /v1/projects/:project/boxes/:name/files': {
    operationId: 'copyFromBox',
    summary: 'A tar stream of a path in the box (zomg cp out)',
    tags: ['files'],
    ok: { 200: json('application/x-tar') },
    errors: [404, 409],
  },
  'PUT /v1/projects/:project/boxes/:name/files': {
    operationId: 'copyToBox',
    summary: 'Extract a tar stream at a path in the box (zomg cp in)',
    tags: ['files'],
    ok: { 204: none },
    errors: [404, 409, 422, 507],
  },
  'GET /v1/projects/:project/volumes': { operationId: 'listVolumes', summary: 'The data volumes of a project', tags: ['volumes'], ok: { 200: json('{volumes: [Volume]}') }, errors: [] },
  'POST /v1/projects/:project/volumes': { operationId: 'createVolume', summary: 'Create a data volume (empty, or an O(1) clone of another or of its snapshot)', tags: ['volumes'], ok: { 201: json('the Volume') }, errors: [404, 409, 507] },
  'GET /v1/projects/:project/volumes/:volume': { operationId: 'getVolume', summary: 'One data volume', tags: ['volumes'], ok: { 200: json('the Volume') }, errors: [404] },
  'DELETE /v1/projects/:project/volumes/:volume': { operationId: 'deleteVolume', summary: 'Delete a data volume (refused while mounted)', tags: ['volumes'], ok: { 204: none }, errors: [404, 409] },
  'GET /v1/projects/:project/volumes/:volume/snapshots': { operationId: 'listVolumeSnapshots', summary: 'The snapshots of a data volume, oldest first', tags: ['volumes'], ok: { 200: json('{snapshots: [VolumeSnapshot]}') }, errors: [404] },
  'POST /v1/projects/:project/volumes/:volume/snapshots': { operationId: 'createVolumeSnapshot', summary: 'A read-only snapshot of a data volume (vN unless named)', tags: ['volumes'], ok: { 201: json('the VolumeSnapshot') }, errors: [404, 409, 507] },
  'DELETE /v1/projects/:project/volumes/:volume/snapshots/:snapshot': { operationId: 'deleteVolumeSnapshot', summary: 'Delete a snapshot of a data volume', tags: ['volumes'], ok: { 204: none }, errors: [404, 409] },
  'POST /v1/projects/:project/volumes/:volume/snapshots/:snapshot/restore': { operationId: 'restoreVolumeSnapshot', summary: 'Replace a data volume with its snapshot, atomically', tags: ['volumes'], ok: { 200: json('the VolumeSnapshot') }, errors: [404, 409, 507] },
  'GET /v1/projects/:project/volumes/:volume/diff': { operationId: 'diffVolume', summary: 'What changed in a data volume since a snapshot', tags: ['volumes'], ok: { 200: json('a DiffStatus of the volume') }, errors: [404, 409] },
  'GET /v1/projects/:project/volumes/:volume/diff/file': { operationId: 'diffVolumeFile', summary: 'How one file of a data volume changed since a snapshot', tags: ['volumes'], ok: { 200: json('a FileDiff') }, errors: [404, 409, 413] },
  'POST /v1/projects/:project/volumes/:volume/backups': { operationId: 'createVolumeBackup', summary: 'Back a data volume up to a target (full, then incremental)', tags: ['volumes'], ok: { 201: json('the VolumeBackup') }, errors: [404, 409, 507] },
  'GET /v1/projects/:project/backups': { operationId: 'listVolumeBackups', summary: 'The backups at a target (read from its manifests)', tags: ['volumes'], ok: { 200: json('{backups: [VolumeBackup]}') }, errors: [404, 422] },
  'POST /v1/projects/:project/backups/restore': { operationId: 'restoreVolumeBackup', summary: 'Restore a backup chain into a new data volume (verified by sha256)', tags: ['volumes'], ok: { 201: json('the Volume') }, errors: [404, 409, 422, 507] },
  'POST /v1/projects/:project/boxes/:name/data-mounts': { operationId: 'attachVolume', summary: 'Mount a data volume in a stopped box', tags: ['volumes'], ok: { 200: json('the Box') }, errors: [404, 409] },
  'DELETE /v1/projects/:project/boxes/:name/data-mounts/:volume': { operationId: 'detachVolume', summary: 'Unmount a data volume from a stopped box', tags: ['volumes'], ok: { 200: json('the Box') }, errors: [404, 409] },
};

/** Adds the description of `method url` to a route schema that has none. */
export function describeRoute(method: string, url: string, schema: Record<string, unknown>): void {
  if (schema.operationId !== undefined) return;
  const doc = DOCS[`${method} ${url}`];
  if (!doc) return;
  Object.assign(schema, {
    operationId: doc.operationId,
    summary: doc.summary,
    tags: doc.tags,
    ...(doc.description ? { description: doc.description } : {}),
    ...(doc.websocket ? { 'x-websocket': true, hide: false } : {}),
  });
  // Only the documented statuses are added: the success answer is serialized as it is sent.
  const documented = responses(doc.ok, ...doc.errors);
  const response = (schema.response as Record<number, unknown> | undefined) ?? {};
  for (const [status, s] of Object.entries(documented)) {
    const own = response[Number(status)] as Record<string, unknown> | undefined;
    if (own === undefined) response[Number(status)] = s;
    else if (own.description === undefined) own.description = (s as { description?: string }).description;
  }
  schema.response = response;
}
