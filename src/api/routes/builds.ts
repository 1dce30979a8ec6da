/**
 * `POST /v1/bases/{name}/build` (a Dockerfile build from an uploaded context) and
 * `POST /v1/projects/{project}/bases` (save a box as a base).
 *
 * The build runs on the server: the client uploads its context as a tar stream
 * (`Content-Type: application/x-tar`) and names the Dockerfile inside it (`?dockerfile=`).
 * With `Accept: application/x-ndjson` the answer streams as newline-delimited JSON events:
 * `{"type":"phase","phase"}` and `{"type":"line","line"}` while it builds, then one
 * `{"type":"result","version"}` or `{"type":"error", statusCode, code, error, message,
 * hint?}`. Failures found before the build starts (a bad name, no Dockerfile, no engine) are
 * ordinary error responses with their status; without that Accept the answer is the created
 * version (201) once done.
 */
import { PassThrough, type Readable } from 'node:stream';
import { Type } from '@sinclair/typebox';
import { InvalidArgumentError } from '../../core/errors.js';
import { checkPath, checkText } from '../../core/input.js';
import { parseBaseName, parseBoxName, parseProjectName } from '../../core/names.js';
import type { BuildBaseOptions, ZomgService } from '../../core/service.js';
import type { BuilderName } from '../../core/types.js';
import { BaseVersionSchema, SaveBaseBodySchema } from '../../core/wire.js';
import { NDJSON } from '../../core/wire-constants.js';
import { wantsNdjson } from '../diff-stream.js';
import { toErrorBody } from '../errors.js';
import { BaseParams, ProjectParams, responses } from '../schemas.js';
import type { TypedApp } from '../typed.js';

export async function buildRoutes(app: TypedApp, service: ZomgService): Promise<void> {
  app.post(
    '/v1/projects/:project/bases',
    {
      schema: {
        operationId: 'saveBase',
        summary: "Save a box's current root as a new version of a base (O(1))",
        tags: ['bases'],
        params: ProjectParams,
        body: SaveBaseBodySchema,
        response: responses({ 201: Type.Ref(BaseVersionSchema) }, 404, 409, 507),
      },
    },
    async (request, reply) => {
      const ref = { project: parseProjectName(request.params.project), name: parseBoxName(request.body.box) };
      const version = await service.saveBase(parseBaseName(request.body.name), ref);
      return reply.status(201).send(version);
    },
  );

  app.post(
    '/v1/bases/:name/build',
    {
      schema: {
        operationId: 'buildBase',
        summary: 'Build a Dockerfile from an uploaded context (a tar stream) into a new version',
        description:
          'Send the build context as a tar stream (Content-Type application/x-tar). With Accept: application/x-ndjson the answer (200) streams newline-delimited JSON events: {"type":"phase","phase"}, {"type":"line","line"}, then {"type":"result","version"} or {"type":"error", statusCode, code, error, message, hint?}. Without it, the created version (201) once done.',
        tags: ['bases'],
        params: BaseParams,
        querystring: Type.Object(
          {
            dockerfile: Type.Optional(Type.String({ description: 'the Dockerfile inside the context (default Dockerfile)' })),
            builder: Type.Optional(Type.String({ description: 'docker, podman or nerdctl (default: the first installed)' })),
          },
          { additionalProperties: false },
        ),
        consumes: ['application/x-tar'],
        produces: ['application/json', NDJSON],
        response: responses(
          { 200: Type.String({ description: 'the NDJSON event stream (Accept: application/x-ndjson)' }), 201: Type.Ref(BaseVersionSchema) },
          404,
          409,
          415,
          422,
          507,
        ),
      },
    },
    async (request, reply) => {
      const name = parseBaseName(request.params.name);
      if (request.query.dockerfile !== undefined) checkPath(request.query.dockerfile, 'Dockerfile path');
      if (request.query.builder !== undefined) checkText(request.query.builder, 'builder');
      const body = request.body as Readable | undefined;
      if (!body || typeof (body as { pipe?: unknown }).pipe !== 'function') {
        throw new InvalidArgumentError('send the build context as a tar stream in the request body with Content-Type: application/x-tar', { code: 'ZOMG_INVALID_UPLOAD' });
      }
      // A client that goes away stops its build.
      const abort = new AbortController();
      reply.raw.on('close', () => {
        if (!reply.raw.writableFinished) abort.abort();
      });
      const options: BuildBaseOptions = {
        context: body,
        ...(request.query.dockerfile !== undefined ? { dockerfile: request.query.dockerfile } : {}),
        // The engine validates the name (ZOMG_INVALID_BUILDER), as it does for the local CLI.
        ...(request.query.builder !== undefined ? { builder: request.query.builder as BuilderName } : {}),
        signal: abort.signal,
      };
      if (!wantsNdjson(request)) {
        return reply.status(201).send(await service.buildBase(name, options));
      }

      const out = new PassThrough();
      let streaming = false;
      const emit = (event: Record<string, unknown>): void => {
        if (!streaming) {
          streaming = true;
          void reply.status(200).header('content-type', NDJSON).header('cache-control', 'no-store').send(out);
        }
        out.write(`${JSON.stringify(event)}\n`);
      };
      try {
        const version = await service.buildBase(name, {
          ...options,
          onProgress: (p) => emit(p.line !== undefined ? { type: 'line', line: p.line } : { type: 'phase', phase: p.phase }),
        });
        if (!streaming) return reply.status(201).send(version);
        out.end(`${JSON.stringify({ type: 'result', version })}\n`);
      } catch (err) {
        if (!streaming) throw err;
        const error = toErrorBody(err);
        if (error.statusCode >= 500) request.log.error({ err }, 'build failed');
        out.end(`${JSON.stringify({ type: 'error', ...error })}\n`);
      }
      return reply;
    },
  );
}
