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
import type { FastifyInstance } from 'fastify';
import { InvalidArgumentError } from '../../core/errors.js';
import { parseBaseName, parseBoxName, parseProjectName } from '../../core/names.js';
import type { BuildBaseOptions, ZomgService } from '../../core/service.js';
import type { BuilderName } from '../../core/types.js';
import { toErrorBody } from '../errors.js';
import { str } from './params.js';

export const NDJSON = 'application/x-ndjson';

export async function buildRoutes(app: FastifyInstance, service: ZomgService): Promise<void> {
  app.post<{ Params: { project: string }; Body: { box: string; name: string } }>(
    '/v1/projects/:project/bases',
    {
      schema: {
        params: { type: 'object', required: ['project'], properties: { project: str } },
        body: { type: 'object', required: ['box', 'name'], additionalProperties: false, properties: { box: str, name: str } },
      },
    },
    async (request, reply) => {
      const ref = { project: parseProjectName(request.params.project), name: parseBoxName(request.body.box) };
      const version = await service.saveBase(parseBaseName(request.body.name), ref);
      return reply.status(201).send(version);
    },
  );

  app.post<{ Params: { name: string }; Querystring: { dockerfile?: string; builder?: string } }>(
    '/v1/bases/:name/build',
    {
      schema: {
        params: { type: 'object', required: ['name'], properties: { name: str } },
        querystring: { type: 'object', additionalProperties: false, properties: { dockerfile: str, builder: str } },
      },
    },
    async (request, reply) => {
      const name = parseBaseName(request.params.name);
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
      if (!(request.headers.accept ?? '').includes(NDJSON)) {
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
