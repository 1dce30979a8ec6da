/**
 * `buildServer(service)` → a Fastify instance with the `/v1` routes over the engine. It never
 * listens by itself (tests use `inject`; `zomg serve` calls `listen`). Every route has one
 * TypeBox schema (core/wire.ts, api/schemas.ts): its TypeScript types, its validation, its
 * serialization and its OpenAPI entry come from it.
 */
import { timingSafeEqual } from 'node:crypto';
import swagger from '@fastify/swagger';
import { type TypeBoxTypeProvider, TypeBoxValidatorCompiler } from '@fastify/type-provider-typebox';
import websocket from '@fastify/websocket';
import { type TSchema, Type, TypeGuard } from '@sinclair/typebox';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { TooLargeError, UnauthorizedError } from '../core/errors.js';
import type { ZomgService } from '../core/service.js';
import { PAGE_MAX_RESULTS } from '../core/wire-constants.js';
import { quote } from '../core/input.js';
import { errorHandler, toErrorBody } from './errors.js';
import { checkHostAndOrigin } from './origin.js';
import { baseRoutes } from './routes/bases.js';
import { boxRoutes } from './routes/boxes.js';
import { buildRoutes } from './routes/builds.js';
import { checkpointRoutes } from './routes/checkpoints.js';
import { diffRoutes } from './routes/diffs.js';
import { fileRoutes } from './routes/files.js';
import { runningRoutes } from './routes/running.js';
import { terminalRoutes } from './routes/terminals.js';
import { addSharedSchemas } from './schemas.js';
import type { TypedApp } from './typed.js';
import { volumeRoutes } from './routes/volumes.js';

export interface ServerOptions {
  service: ZomgService;
  /** Bearer token required on every route but health; null disables auth (loopback only, enforced by `zomg serve`). */
  token: string | null;
  logger?: boolean;
  /** Largest JSON body accepted (bytes); tarball uploads are streamed and not bound by it. */
  bodyLimit?: number;
  /** Whether clients may create `privileged` boxes (`zomg serve --allow-privileged`; default no). */
  allowPrivileged?: boolean;
  /**
   * With no token: the `host:port` values requests (and browser Origins) may name, read per
   * request (the port is known once listening). Anything else is refused (ZOMG_FORBIDDEN_ORIGIN).
   */
  allowedHosts?: () => Set<string>;
  /** Listings answer at most this many items per page when the client names no max_results (default and most: PAGE_MAX_RESULTS). */
  pageSize?: number;
}

export interface RegisteredRoute {
  method: string;
  url: string;
  websocket: boolean;
  /** The route's schema as registered (TypeBox parts, OpenAPI fields). */
  schema: Record<string, unknown> | undefined;
}

const ROUTES = new WeakMap<object, RegisteredRoute[]>();

/** Every route `buildServer` registered (HEAD twins left out): what the OpenAPI document must describe. */
export const registeredRoutes = (app: FastifyInstance): RegisteredRoute[] => [...(ROUTES.get(app) ?? [])];

const PUBLIC = new Set(['/v1/health', '/v1/openapi.json']);

/** Largest WebSocket frame (the exec request, a chunk of stdin). */
const WS_MAX_PAYLOAD_BYTES = 8 * 1024 * 1024;

function tokenMatches(header: string | undefined, token: string): boolean {
  if (!header?.startsWith('Bearer ')) return false;
  const given = Buffer.from(header.slice('Bearer '.length).trim());
  const want = Buffer.from(token);
  return want.length > 0 && given.length === want.length && timingSafeEqual(given, want);
}

/** What a refused upload may still send, and for how long, after its answer. */
const LINGER_BYTES = 64 * 1024 * 1024;
const LINGER_MS = 5_000;
/** Connections whose answer refused a body they are still sending: no request of theirs is served. */
const lingering = new WeakSet<object>();

/**
 * A body refused before it was read (over the size limit: 413 ZOMG_TOO_LARGE) is answered with
 * `Connection: close`, and Node then closes the socket with the rest of the upload unread. The
 * kernel answers that with a reset, which can also drop the answer the client has not read yet:
 * the client, still sending, saw EPIPE or ECONNRESET instead of the error (~1 request in 100 of
 * 2 MiB over loopback). As nginx's lingering close does, the answer goes at once, then only the
 * sending side of the connection is closed, and the rest of the upload is read and dropped: up
 * to its end, LINGER_BYTES or LINGER_MS, when the connection is cut. A request sent after it on
 * that connection (pipelined) is not served: the answer said the connection closes.
 */
function lingerOnRefusedBody(raw: FastifyRequest['raw'], reply: FastifyReply): void {
  const socket = raw.socket as FastifyRequest['raw']['socket'] | undefined;
  // (A request injected in-process, as tests do, has no socket of its own.)
  if (raw.complete || typeof socket?.destroy !== 'function' || !/close/i.test(String(reply.getHeader('connection') ?? ''))) return;
  lingering.add(socket);
  let read = 0;
  // Not before the answer is written (the body can end first).
  const cut = (): void => {
    clearTimeout(timer);
    if (reply.raw.writableFinished) socket.destroy();
    else reply.raw.once('finish', () => socket.destroy());
  };
  const timer = setTimeout(cut, LINGER_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
  // Read by this listener, the body is not one Node drops (and its listeners with it) at the
  // answer's end.
  raw.on('data', (chunk: Buffer) => {
    read += chunk.length;
    if (read > LINGER_BYTES) cut();
  });
  raw.once('end', cut);
  raw.resume();
  // What Node calls once a `Connection: close` answer is written: only the answer's FIN, the
  // socket stays open for reading.
  socket.destroySoon = function endOnly(this: typeof socket): void {
    this.end();
  };
}

export async function buildServer(options: ServerOptions): Promise<FastifyInstance> {
  const app: TypedApp = Fastify({
    logger: options.logger ?? false,
    bodyLimit: options.bodyLimit ?? 1024 * 1024,
    // Long enough for any name to reach its parser (and its clear error) instead of "no route".
    // (Node refuses request heads over 16 KiB anyway.)
    routerOptions: { maxParamLength: 16 * 1024 },
    // Errors the router raises before any route runs (a malformed URL) get the same body as every other error.
    frameworkErrors: (err, _request, reply) => {
      const out = toErrorBody(err);
      void (reply as FastifyReply).status(out.statusCode).send(out);
    },
  }).withTypeProvider<TypeBoxTypeProvider>();
  const routes: RegisteredRoute[] = [];
  ROUTES.set(app, routes);
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) {
      if (method !== 'HEAD') {
        routes.push({ method, url: route.url, websocket: (route as { websocket?: boolean }).websocket === true, schema: route.schema as Record<string, unknown> | undefined });
      }
    }
  });
  // TypeBox checks requests: bodies exactly as sent (no type coercion: 5 is not "5"), path and
  // query strings converted to the declared types. An optional body may be absent.
  app.setValidatorCompiler((req) => {
    const check = TypeBoxValidatorCompiler(req as Parameters<typeof TypeBoxValidatorCompiler>[0]);
    if (req.httpPart !== 'body' || !TypeGuard.IsOptional(req.schema as TSchema)) return check;
    return (value: unknown) => (value === undefined ? { value } : check(value));
  });
  // Bodies are JSON or a stream of one of the upload types: anything else is a 415.
  app.removeContentTypeParser('text/plain');
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0] ?? '';
    void reply.status(404).send({ statusCode: 404, code: 'ZOMG_ROUTE_NOT_FOUND', error: 'Not Found', message: `no route ${request.method} ${quote(path)}` });
  });
  addSharedSchemas(app);
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'zomg API', version: '1', description: 'Boxes on btrfs: create, exec, checkpoint, restore, diff, and bases. Errors: docs/errors.md.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
      tags: [
        { name: 'boxes', description: 'Boxes: writable btrfs clones of a base' },
        { name: 'running', description: 'Lifecycle and exec' },
        { name: 'checkpoints', description: "Snapshots of a box's root" },
        { name: 'diffs', description: 'What changed since a checkpoint' },
        { name: 'bases', description: 'Read-only templates and their versions' },
        { name: 'terminals', description: 'Consoles, processes and background logs of a running box' },
        { name: 'files', description: 'Copying files in and out of a box as tar streams' },
        { name: 'volumes', description: 'Data volumes: snapshots, diffs, backups, mounts in boxes' },
        { name: 'system', description: 'Health and this document' },
      ],
    },
    // @fastify/websocket hides its routes from the document; ours are described (x-websocket), so they show.
    transform: ({ schema, url }) => ({
      url,
      schema: schema && (schema as Record<string, unknown>)['x-websocket'] === true ? ({ ...schema, hide: false } as typeof schema) : schema,
    }),
    // Shared shapes are components named by their $id (Box, BaseVersion, Error, …).
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
  });
  await app.register(websocket, { options: { maxPayload: WS_MAX_PAYLOAD_BYTES } });
  const token = options.token;
  const allowed = options.allowedHosts;
  // A request pipelined behind a refused body (lingerOnRefusedBody) is dropped with its connection.
  app.addHook('onRequest', async (request) => {
    if (!lingering.has(request.raw.socket)) return;
    request.raw.socket.destroy();
    throw new TooLargeError('ZOMG_TOO_LARGE', 'a request sent after a refused body, on the connection that refusal closes');
  });
  if (token === null && allowed !== undefined) {
    app.addHook('onRequest', async (request) => checkHostAndOrigin(request, allowed()));
  }
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
  app.addHook('onSend', async (request, reply, payload) => {
    lingerOnRefusedBody(request.raw, reply);
    return payload;
  });
  // Tarball uploads arrive as a raw stream; handlers read it themselves.
  app.addContentTypeParser(
    ['application/octet-stream', 'application/x-tar', 'application/gzip', 'application/zstd', 'application/x-xz'],
    (_request, payload, done) => done(null, payload),
  );

  app.get(
    '/v1/health',
    { schema: { operationId: 'health', summary: 'Liveness (no token needed)', tags: ['system'], security: [], response: { 200: Type.Object({ status: Type.Literal('ok') }, { description: 'the server is up' }) } } },
    async () => ({ status: 'ok' as const }),
  );
  app.get(
    '/v1/openapi.json',
    {
      schema: {
        operationId: 'openapi',
        summary: 'This OpenAPI document (no token needed)',
        tags: ['system'],
        security: [],
        response: { 200: Type.Object({}, { additionalProperties: true, description: 'an OpenAPI 3.1 document' }) },
      },
    },
    async () => app.swagger(),
  );

  const service = options.service;
  const paging = { pageSize: Math.min(options.pageSize ?? PAGE_MAX_RESULTS, PAGE_MAX_RESULTS) };
  await app.register(async (scope) => boxRoutes(scope, service, paging, { allowPrivileged: options.allowPrivileged === true }));
  await app.register(async (scope) => checkpointRoutes(scope, service, paging));
  await app.register(async (scope) => baseRoutes(scope, service, paging));
  await app.register(async (scope) => buildRoutes(scope, service));
  await app.register(async (scope) => diffRoutes(scope, service));
  await app.register(async (scope) => runningRoutes(scope, service));
  await app.register(async (scope) => terminalRoutes(scope, service));
  await app.register(async (scope) => fileRoutes(scope, service));
  await app.register(async (scope) => volumeRoutes(scope, service));
  return app;
}
