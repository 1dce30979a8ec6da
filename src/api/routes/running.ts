/** Lifecycle and exec: `POST …/stop`, `…/resume`, `…/exec` (buffered, or detached with `background`) and `GET …/exec/ws` (streamed). */
import { PassThrough, Readable, Writable } from 'node:stream';
import { Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import type { WebSocket } from 'ws';
import { CHANNEL_STDERR, CHANNEL_STDOUT, EXEC_PROTOCOL_DESCRIPTION, type ServerMessage } from '../../core/exec-protocol.js';
import { InvalidArgumentError } from '../../core/errors.js';
import { checkExecInput } from '../../core/input.js';
import type { BoxRef } from '../../core/refs.js';
import type { ExecRequest, ZomgService } from '../../core/service.js';
import {
  BackgroundExecSchema,
  EXEC_OUTPUT_CAP_BYTES,
  ExecBodySchema,
  type ExecResult,
  ExecResultSchema,
  type ExecStreamRequest,
  ExecStreamRequestSchema,
  LifecycleResultSchema,
} from '../../core/wire.js';
import { toErrorBody } from '../errors.js';
import { BoxParams, noBody, responses } from '../schemas.js';
import type { TypedApp } from '../typed.js';
import { boxRef } from './params.js';

const tags = ['running'];

/** A string command runs through the shell, an array as argv. Every string is checked (NUL, control bytes) before use. */
function toRequest(body: ExecStreamRequest): ExecRequest {
  const isString = typeof body.command === 'string';
  const req: ExecRequest = {
    command: isString ? [body.command as string] : (body.command as string[]),
    ...(body.env ? { env: body.env } : {}),
    ...(body.cwd !== undefined ? { cwd: body.cwd } : {}),
    ...(body.shell || isString ? { shell: true } : {}),
    ...(body.user !== undefined ? { user: body.user } : {}),
  };
  checkExecInput(req);
  return req;
}

/**
 * Collects at most `cap` bytes and keeps reading (and dropping) the rest, so a chatty command
 * is never blocked on a full pipe and the answer stays bounded.
 */
function capped(cap: number): { stream: Writable; text(): string; truncated(): boolean } {
  const chunks: Buffer[] = [];
  let kept = 0;
  let dropped = false;
  return {
    stream: new Writable({
      write(chunk: Buffer, _enc, cb) {
        const room = cap - kept;
        if (room > 0) {
          const part = chunk.length <= room ? chunk : chunk.subarray(0, room);
          chunks.push(part);
          kept += part.length;
        }
        if (chunk.length > room) dropped = true;
        cb();
      },
    }),
    text: () => Buffer.concat(chunks).toString('utf8'),
    truncated: () => dropped,
  };
}

function channelWriter(socket: WebSocket, channel: number): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, cb) {
      if (socket.readyState !== socket.OPEN) return cb();
      socket.send(Buffer.concat([Buffer.from([channel]), chunk]), { binary: true }, () => cb());
    },
  });
}

/** The first problem TypeBox finds, as "/field: rule" (never the value sent). */
function schemaProblem(value: unknown): string | undefined {
  const first = Value.Errors(ExecStreamRequestSchema, value).First();
  return first ? `${first.path || '/'}: ${first.message}` : undefined;
}

/** Parses and checks the first WebSocket frame; throws a ZomgError for anything but a valid exec request. */
function parseExecFrame(data: Buffer, isBinary: boolean): ExecRequest {
  if (isBinary) {
    throw new InvalidArgumentError('the first message must be the exec request as a JSON text frame, not binary data', { hint: EXEC_HINT });
  }
  let body: unknown;
  try {
    body = JSON.parse(data.toString('utf8'));
  } catch {
    throw new InvalidArgumentError('the first message must be JSON: the exec request {command, cwd?, env?, shell?, user?}', { code: 'ZOMG_INVALID_JSON', hint: EXEC_HINT });
  }
  const problem = schemaProblem(body);
  if (problem !== undefined) throw new InvalidArgumentError(`invalid exec request: ${problem}`, { hint: EXEC_HINT });
  return toRequest(body as ExecStreamRequest);
}

const EXEC_HINT = 'send {"command":["id"]} (argv) or {"command":"echo hi"} (a shell string) first; see the exec/ws operation in /v1/openapi.json';

export async function runningRoutes(app: TypedApp, service: ZomgService): Promise<void> {
  const base = '/v1/projects/:project/boxes/:name';
  const lifecycle = { params: BoxParams, response: responses({ 200: Type.Ref(LifecycleResultSchema) }, 404, 409, 422) };
  app.post(`${base}/stop`, { preValidation: noBody, schema: { operationId: 'stopBox', summary: 'Stop every process of a box (its root stays)', tags, ...lifecycle } }, async (request) =>
    service.stopBox(boxRef(request.params)),
  );
  app.post(`${base}/resume`, { preValidation: noBody, schema: { operationId: 'resumeBox', summary: 'Start a stopped box', tags, ...lifecycle } }, async (request) =>
    service.resumeBox(boxRef(request.params)),
  );

  app.post(
    `${base}/exec`,
    {
      schema: {
        operationId: 'execBox',
        summary: `Run a command and answer with its exit code and output (each stream capped at ${EXEC_OUTPUT_CAP_BYTES} bytes)`,
        description:
          `stdout and stderr are kept up to ${EXEC_OUTPUT_CAP_BYTES} bytes each; the command's further output is read and dropped (so it is never blocked), ` +
          'and stdout_truncated / stderr_truncated say so. For more, use the exec/ws WebSocket. With background: true the command runs detached and the answer is {pid, log_path}.',
        tags,
        params: BoxParams,
        body: ExecBodySchema,
        response: responses({ 200: Type.Union([Type.Ref(ExecResultSchema), Type.Ref(BackgroundExecSchema)]) }, 404, 409),
      },
    },
    async (request) => {
      const ref = boxRef(request.params);
      const req = toRequest(request.body);
      if (request.body.background) return service.execBackground(ref, req);
      const out = capped(EXEC_OUTPUT_CAP_BYTES);
      const err = capped(EXEC_OUTPUT_CAP_BYTES);
      const stdin = request.body.stdin !== undefined ? Readable.from([Buffer.from(request.body.stdin)]) : undefined;
      const { exit_code } = await service.exec(ref, req, { ...(stdin ? { stdin } : {}), stdout: out.stream, stderr: err.stream });
      const result: ExecResult = { exit_code, stdout: out.text(), stderr: err.text(), stdout_truncated: out.truncated(), stderr_truncated: err.truncated() };
      return result;
    },
  );

  app.get(
    `${base}/exec/ws`,
    {
      websocket: true,
      // Checked before the upgrade: a bad name (400) or a missing box (404) is a plain HTTP answer, never a socket.
      preHandler: async (request) => {
        await service.getBox(boxRef(request.params));
      },
      schema: {
        operationId: 'execStream',
        summary: 'Run a command with streamed stdin, stdout and stderr (WebSocket)',
        description: EXEC_PROTOCOL_DESCRIPTION,
        tags,
        params: BoxParams,
        'x-websocket': true,
        response: responses({ 101: Type.Null({ description: 'Switching Protocols: the WebSocket exec protocol follows' }) }, 404),
      },
    },
    (socket, request) => {
      const abort = new AbortController();
      let ref: BoxRef | undefined;
      let stdin: PassThrough | undefined;
      let started = false;
      let finished = false;
      const send = (msg: ServerMessage): void => {
        if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(msg));
      };
      const fail = (err: unknown): void => {
        if (finished) return;
        finished = true;
        const { statusCode, code, message, hint } = toErrorBody(err);
        if (statusCode >= 500) request.log.error({ err }, 'exec stream failed');
        send({ type: 'error', statusCode, code, message, ...(hint !== undefined ? { hint } : {}) });
        abort.abort();
        socket.close();
      };
      try {
        ref = boxRef(request.params);
      } catch (err) {
        fail(err);
        return;
      }
      socket.on('error', () => abort.abort());
      socket.on('close', () => abort.abort());
      socket.on('message', (data: Buffer, isBinary: boolean) => {
        // Nothing a client sends may throw out of this listener: every failure becomes an error frame.
        try {
          if (finished) return;
          if (!started) {
            started = true;
            const req = parseExecFrame(data, isBinary);
            stdin = new PassThrough();
            service
              .exec(ref as BoxRef, req, { stdin, stdout: channelWriter(socket, CHANNEL_STDOUT), stderr: channelWriter(socket, CHANNEL_STDERR), signal: abort.signal })
              .then(
                ({ exit_code }) => {
                  finished = true;
                  send({ type: 'exit', exit_code });
                  socket.close();
                },
                (err: unknown) => fail(err),
              )
              .catch((err: unknown) => request.log.error({ err }, 'exec stream failed'));
            return;
          }
          if (isBinary) {
            if (stdin && !stdin.writableEnded) stdin.write(data);
            return;
          }
          let control: unknown;
          try {
            control = JSON.parse(data.toString('utf8'));
          } catch {
            control = undefined;
          }
          if ((control as { type?: unknown } | undefined)?.type !== 'stdin_end') {
            throw new InvalidArgumentError('after the exec request, text frames may only be {"type":"stdin_end"}; stdin goes in binary frames', { hint: EXEC_HINT });
          }
          stdin?.end();
        } catch (err) {
          fail(err);
        }
      });
    },
  );
}
