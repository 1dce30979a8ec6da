/** `GET …/boxes/{name}/diff` and `GET …/boxes/{name}/diff/file`. */
import type { FastifyInstance } from 'fastify';
import type { ZomgService } from '../../core/service.js';
import { sendDiffNdjson, wantsNdjson } from '../diff-stream.js';
import { type BoxParams, boxParams, boxRef, str } from './params.js';

export async function diffRoutes(app: FastifyInstance, service: ZomgService): Promise<void> {
  app.get<{ Params: BoxParams; Querystring: { against?: string; to?: string } }>(
    '/v1/projects/:project/boxes/:name/diff',
    { schema: { params: boxParams, querystring: { type: 'object', additionalProperties: false, properties: { against: str, to: str } } } },
    async (request, reply) => {
      const options = {
        ...(request.query.against !== undefined ? { against: request.query.against } : {}),
        ...(request.query.to !== undefined ? { to: request.query.to } : {}),
      };
      // NDJSON, written as the diff is verified, for clients that ask; JSON for the others.
      if (wantsNdjson(request)) return sendDiffNdjson(service, boxRef(request.params), options, request, reply);
      return service.diffStatus(boxRef(request.params), options);
    },
  );

  app.get<{ Params: BoxParams; Querystring: { path: string; against?: string } }>(
    '/v1/projects/:project/boxes/:name/diff/file',
    { schema: { params: boxParams, querystring: { type: 'object', required: ['path'], additionalProperties: false, properties: { path: str, against: str } } } },
    async (request) =>
      service.diffFile(boxRef(request.params), request.query.path, request.query.against !== undefined ? { against: request.query.against } : {}),
  );
}
