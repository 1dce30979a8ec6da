/** Lifecycle and exec: `POST …/stop`, `…/resume`, `…/exec` (buffered) and `GET …/exec/ws` (streamed). */
import { PassThrough, Readable, Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import type { WebSocket } from 'ws';
import { CHANNEL_STDERR, CHANNEL_STDOUT, type ServerMessage } from '../../core/exec-protocol.js';
import { InvalidArgumentError } from '../../core/errors.js';
import type { ExecRequest, ZomgService } from '../../core/service.js';
import { toErrorBody } from '../errors.js';
import { type BoxParams, boxParams, boxRef, str } from './params.js';

const execSchema = {
  type: 'object',
  required: ['command'],
  additionalProperties: false,
  properties: {
    // The string form first: with type coercion on, an array schema tried first would swallow a string.
    command: { anyOf: [{ type: 'string', minLength: 1 }, { type: 'array', items: str, minItems: 1 }] },
    cwd: str,
    env: { type: 'object', additionalProperties: str },
    shell: { type: 'boolean' },
    user: str,
    stdin: str,
    background: { type: 'boolean' },
  },
} as const;

interface ExecBody {
  command: string[] | string;
  cwd?: string;
  env?: Record<string, string>;
  shell?: boolean;
  user?: string;
  stdin?: string;
  background?: boolean;
}

/** A string command runs through the shell, an array as argv. */
function toRequest(body: ExecBody): ExecRequest {
  const isString = typeof body.command === 'string';
  return {
    command: isString ? [body.command as string] : (body.command as string[]),
    ...(body.env ? { env: body.env } : {}),
    ...(body.cwd !== undefined ? { cwd: body.cwd } : {}),
    ...(body.shell || isString ? { shell: true } : {}),
    ...(body.user !== undefined ? { user: body.user } : {}),
  };
}

const collect = (): { stream: Writable; text(): string } => {
  const chunks: Buffer[] = [];
  return {
    stream: new Writable({
      write(chunk: Buffer, _enc, cb) {
        chunks.push(chunk);
        cb();
      },
    }),
    text: () => Buffer.concat(chunks).toString('utf8'),
  };
};

function channelWriter(socket: WebSocket, channel: number): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, cb) {
      if (socket.readyState !== socket.OPEN) return cb();
      socket.send(Buffer.concat([Buffer.from([channel]), chunk]), { binary: true }, () => cb());
    },
  });
}

export async function runningRoutes(app: FastifyInstance, service: ZomgService): Promise<void> {
  const base = '/v1/projects/:project/boxes/:name';
  app.post<{ Params: BoxParams }>(`${base}/stop`, { schema: { params: boxParams } }, async (request) => service.stopBox(boxRef(request.params)));
  app.post<{ Params: BoxParams }>(`${base}/resume`, { schema: { params: boxParams } }, async (request) => service.resumeBox(boxRef(request.params)));

  app.post<{ Params: BoxParams; Body: ExecBody }>(`${base}/exec`, { schema: { params: boxParams, body: execSchema } }, async (request) => {
    const ref = boxRef(request.params);
    const req = toRequest(request.body);
    if (request.body.background) return service.execBackground(ref, req);
    const out = collect();
    const err = collect();
    const stdin = request.body.stdin !== undefined ? Readable.from([Buffer.from(request.body.stdin)]) : undefined;
    const { exit_code } = await service.exec(ref, req, { ...(stdin ? { stdin } : {}), stdout: out.stream, stderr: err.stream });
    return { exit_code, stdout: out.text(), stderr: err.text() };
  });

  app.get<{ Params: BoxParams }>(`${base}/exec/ws`, { websocket: true, schema: { params: boxParams, hide: true } }, (socket, request) => {
    const send = (msg: ServerMessage): void => {
      if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(msg));
    };
    const abort = new AbortController();
    let stdin: PassThrough | undefined;
    let started = false;
    socket.on('close', () => abort.abort());
    socket.on('message', (data: Buffer, isBinary: boolean) => {
      if (!started) {
        started = true;
        let body: ExecBody;
        try {
          body = JSON.parse(data.toString('utf8')) as ExecBody;
          if (!body || (!Array.isArray(body.command) && typeof body.command !== 'string')) throw new InvalidArgumentError('the first message must be the exec request {command, cwd?, env?, shell?, user?}');
        } catch (err) {
          send({ type: 'error', ...toErrorBody(err instanceof SyntaxError ? new InvalidArgumentError('the first message must be JSON', { code: 'ZOMG_INVALID_JSON' }) : err) });
          socket.close();
          return;
        }
        stdin = new PassThrough();
        service
          .exec(boxRef(request.params), toRequest(body), { stdin, stdout: channelWriter(socket, CHANNEL_STDOUT), stderr: channelWriter(socket, CHANNEL_STDERR), signal: abort.signal })
          .then(
            ({ exit_code }) => send({ type: 'exit', exit_code }),
            (err: unknown) => send({ type: 'error', ...toErrorBody(err) }),
          )
          .finally(() => socket.close());
        return;
      }
      if (isBinary) stdin?.write(data);
      else stdin?.end();
    });
  });
}
