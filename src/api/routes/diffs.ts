/** `GET …/boxes/{name}/diff` and `GET …/boxes/{name}/diff/file`. */
import { Type } from '@sinclair/typebox';
import type { ZomgService } from '../../core/service.js';
import { ndjsonDescription, sendDiffNdjson, wantsNdjson } from '../diff-stream.js';
import { DiffStatusSchema, FileDiffSchema } from '../../core/wire.js';
import { NDJSON } from '../../core/wire-constants.js';
import { BoxParams, responses } from '../schemas.js';
import type { TypedApp } from '../typed.js';
import { boxRef } from './params.js';

const tags = ['diffs'];

export async function diffRoutes(app: TypedApp, service: ZomgService): Promise<void> {
  app.get(
    '/v1/projects/:project/boxes/:name/diff',
    {
      schema: {
        operationId: 'diffStatus',
        summary: "What changed in the box's root since a checkpoint (default: the latest)",
        description: ndjsonDescription('{box, project, against, to, method}'),
        produces: ['application/json', NDJSON],
        tags,
        params: BoxParams,
        querystring: Type.Object(
          {
            against: Type.Optional(Type.String({ description: 'the checkpoint to compare against' })),
            to: Type.Optional(Type.String({ description: 'compare to this checkpoint instead of the live root' })),
          },
          { additionalProperties: false },
        ),
        response: responses({ 200: Type.Ref(DiffStatusSchema) }, 404, 409, 422),
      },
    },
    async (request, reply) => {
      const options = {
        ...(request.query.against !== undefined ? { against: request.query.against } : {}),
        ...(request.query.to !== undefined ? { to: request.query.to } : {}),
      };
      // NDJSON, written as the diff is verified, for clients that ask; JSON for the others.
      if (wantsNdjson(request)) return sendDiffNdjson((sink, signal) => service.diffStatusStream(boxRef(request.params), sink, { ...options, signal }), reply);
      return service.diffStatus(boxRef(request.params), options);
    },
  );

  app.get(
    '/v1/projects/:project/boxes/:name/diff/file',
    {
      schema: {
        operationId: 'diffFile',
        summary: 'How one file changed since a checkpoint, with a unified diff for text',
        tags,
        params: BoxParams,
        querystring: Type.Object(
          {
            path: Type.String({ description: 'an absolute path inside the box' }),
            against: Type.Optional(Type.String({ description: 'the checkpoint to compare against' })),
          },
          { additionalProperties: false },
        ),
        response: responses({ 200: Type.Ref(FileDiffSchema) }, 404, 409, 413, 422),
      },
    },
    async (request) =>
      service.diffFile(boxRef(request.params), request.query.path, request.query.against !== undefined ? { against: request.query.against } : {}),
  );
}
