/**
 * `buildServer(service)` → a Fastify instance with the `/v1` routes over the engine. It never
 * listens by itself (tests use `inject`; `zomg serve` calls `listen`).
 */
import { timingSafeEqual } from 'node:crypto';
import swagger from '@fastify/swagger';
import websocket from '@fastify/websocket';
import Fastify, { type FastifyInstance } from 'fastify';
import { UnauthorizedError } from '../core/errors.js';
import type { ZomgService } from '../core/service.js';
import { errorHandler } from './errors.js';
import { baseRoutes } from './routes/bases.js';
import { boxRoutes } from './routes/boxes.js';
import { buildRoutes } from './routes/builds.js';
import { checkpointRoutes } from './routes/checkpoints.js';
import { diffRoutes } from './routes/diffs.js';
import { runningRoutes } from './routes/running.js';
import { volumeRoutes } from './routes/volumes.js';

export interface ServerOptions {
  service: ZomgService;
  /** Bearer token required on every route but health; null disables auth (loopback only, enforced by `zomg serve`). */
  token: string | null;
  logger?: boolean;
  /** Largest JSON body accepted (bytes); tarball uploads are streamed and not bound by it. */
  bodyLimit?: number;
}

const PUBLIC = new Set(['/v1/health', '/v1/openapi.json']);

function tokenMatches(header: string | undefined, token: string): boolean {
  if (!header?.startsWith('Bearer ')) return false;
  const given = Buffer.from(header.slice('Bearer '.length).trim());
  const want = Buffer.from(token);
  return want.length > 0 && given.length === want.length && timingSafeEqual(given, want);
}

export async function buildServer(options: ServerOptions): Promise<FastifyInstance> {
  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: options.bodyLimit ?? 1024 * 1024,
    // Unknown fields are errors, not silently dropped: a typo must not create the wrong thing.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true } },
  });
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler((request, reply) => {
    void reply.status(404).send({ statusCode: 404, code: 'ZOMG_ROUTE_NOT_FOUND', error: 'Not Found', message: `no route ${request.method} ${request.url.split('?')[0]}` });
  });
  await app.register(swagger, {
    openapi: {
      info: { title: 'zomg API', version: '1' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  });
  await app.register(websocket);
  const token = options.token;
  if (token !== null) {
    app.addHook('onRequest', async (request) => {
      const path = request.url.split('?')[0] ?? '';
      if (PUBLIC.has(path)) return;
      if (!tokenMatches(request.headers.authorization, token)) {
        throw new UnauthorizedError(request.headers.authorization ? 'invalid bearer token' : 'missing bearer token', {
          hint: 'pass Authorization: Bearer <token> (the token `zomg serve` printed on first start)',
        });
      }
    });
  }
  // Tarball uploads arrive as a raw stream; handlers read it themselves.
  app.addContentTypeParser(
    ['application/octet-stream', 'application/x-tar', 'application/gzip', 'application/zstd', 'application/x-xz'],
    (_request, payload, done) => done(null, payload),
  );

  app.get('/v1/health', { schema: { security: [], response: { 200: { type: 'object', properties: { status: { type: 'string' } } } } } }, async () => ({ status: 'ok' }));
  app.get('/v1/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  const service = options.service;
  await app.register(async (scope) => boxRoutes(scope, service));
  await app.register(async (scope) => checkpointRoutes(scope, service));
  await app.register(async (scope) => baseRoutes(scope, service));
  await app.register(async (scope) => buildRoutes(scope, service));
  await app.register(async (scope) => diffRoutes(scope, service));
  await app.register(async (scope) => runningRoutes(scope, service));
  await app.register(async (scope) => volumeRoutes(scope, service));
  return app;
}
