/**
 * `GET …/boxes/{name}/console` (WebSocket: a terminal in the box, core/console-protocol.ts),
 * `GET …/processes` and `GET …/logs?pid=&lines=&follow=` (text, streamed while following).
 */
import { type Static, Type } from '@sinclair/typebox';
import type { WebSocket } from 'ws';
import { type ConsoleServerMessage, type TerminalRequest, type TerminalSession, checkTerminalSize } from '../../core/console-protocol.js';
import { InvalidArgumentError } from '../../core/errors.js';
import type { ZomgService } from '../../core/service.js';
import { ProcessListSchema } from '../../core/wire.js';
import { toErrorBody } from '../errors.js';
import { BoxParams, Streamed, responses } from '../schemas.js';
import type { TypedApp } from '../typed.js';
import { boxRef } from './params.js';
import { streamReply } from './streams.js';

const tags = ['terminals'];

/**
 * The console request in the query, as the query parser gives it (a value, or a list when
 * repeated). It is checked by the console protocol's own parser, so a bad one is an error
 * frame on the socket like a bad first message, not an HTTP answer.
 */
const QueryValue = (description: string) => Type.Optional(Type.Union([Type.String(), Type.Array(Type.String())], { description }));
const ConsoleQuery = Type.Object({
  command: QueryValue('argv, one value per argument (default: a login shell)'),
  user: QueryValue('run as this user of the box'),
  cwd: QueryValue('the working directory'),
  cols: QueryValue('the terminal width (1-4096); with rows, starts the session without a first message'),
  rows: QueryValue('the terminal height (1-4096)'),
});
type ConsoleQuery = Static<typeof ConsoleQuery>;

const list = (v: string | string[] | undefined): string[] | undefined => (v === undefined ? undefined : Array.isArray(v) ? v : [v]);

function protocolError(message: string): InvalidArgumentError {
  return new InvalidArgumentError(message, { code: 'ZOMG_CONSOLE_PROTOCOL', hint: 'see the console protocol: a JSON request {cols, rows, command?, user?}, binary input, {"type":"resize"} messages' });
}

/** The terminal request from the query (when it has `cols`) or from the first text frame. */
function parseRequest(raw: unknown): TerminalRequest {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw protocolError('the console request must be a JSON object');
  const r = raw as Record<string, unknown>;
  const size = checkTerminalSize(r.cols, r.rows);
  const strings = (v: unknown, what: string): string[] | undefined => {
    if (v === undefined) return undefined;
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw protocolError(`"${what}" must be an array of strings`);
    return v as string[];
  };
  const string = (v: unknown, what: string): string | undefined => {
    if (v === undefined) return undefined;
    if (typeof v !== 'string') throw protocolError(`"${what}" must be a string`);
    return v;
  };
  const command = strings(r.command, 'command');
  const user = string(r.user, 'user');
  const cwd = string(r.cwd, 'cwd');
  let env: Record<string, string> | undefined;
  if (r.env !== undefined) {
    if (typeof r.env !== 'object' || r.env === null || Object.values(r.env).some((v) => typeof v !== 'string')) throw protocolError('"env" must map names to strings');
    env = r.env as Record<string, string>;
  }
  return {
    ...size,
    ...(command ? { command } : {}),
    ...(user !== undefined ? { user } : {}),
    ...(cwd !== undefined ? { cwd } : {}),
    ...(env ? { env } : {}),
    ...(r.shell === true ? { shell: true } : {}),
  };
}

function fromQuery(q: ConsoleQuery): TerminalRequest {
  const num = (v: string | string[] | undefined): number => (typeof v === 'string' && /^\d{1,6}$/.test(v) ? Number(v) : Number.NaN);
  return parseRequest({
    cols: num(q.cols),
    rows: num(q.rows),
    ...(q.command !== undefined ? { command: list(q.command) } : {}),
    ...(q.user !== undefined ? { user: q.user } : {}),
    ...(q.cwd !== undefined ? { cwd: q.cwd } : {}),
  });
}

function consoleSession(socket: WebSocket, service: ZomgService, params: Static<typeof BoxParams>, query: ConsoleQuery): void {
  let session: TerminalSession | undefined;
  let starting = false;
  let closed = false;
  const early: Buffer[] = [];
  let pendingSize: { cols: number; rows: number } | undefined;
  const send = (msg: ConsoleServerMessage): void => {
    if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(msg));
  };
  const fail = (err: unknown): void => {
    send({ type: 'error', ...toErrorBody(err) });
    session?.close();
    socket.close();
  };
  const start = (request: TerminalRequest): void => {
    starting = true;
    service.openTerminal(boxRef(params), request).then(
      (s) => {
        session = s;
        if (closed) return s.close();
        s.onData((chunk) => {
          if (socket.readyState === socket.OPEN) socket.send(chunk, { binary: true });
        });
        if (pendingSize) s.resize(pendingSize.cols, pendingSize.rows);
        for (const chunk of early.splice(0)) s.write(chunk);
        s.exited.then(
          (exit_code) => {
            send({ type: 'exit', exit_code });
            socket.close();
          },
          fail,
        );
      },
      fail,
    );
  };
  socket.on('close', () => {
    closed = true;
    session?.close();
  });
  socket.on('message', (data: Buffer, isBinary: boolean) => {
    try {
      if (isBinary) {
        if (!starting) throw protocolError('the console request must come before any input');
        if (session) session.write(data);
        else early.push(data);
        return;
      }
      let msg: unknown;
      try {
        msg = JSON.parse(data.toString('utf8'));
      } catch {
        throw protocolError('text frames must be JSON');
      }
      if (!starting) return start(parseRequest(msg));
      const control = msg as { type?: unknown; cols?: unknown; rows?: unknown };
      if (control.type !== 'resize') throw protocolError(`unknown control message type "${String(control.type)}"`);
      const size = checkTerminalSize(control.cols, control.rows);
      if (session) session.resize(size.cols, size.rows);
      else pendingSize = size;
    } catch (err) {
      fail(err);
    }
  });
  if (query.cols !== undefined) {
    try {
      start(fromQuery(query));
    } catch (err) {
      fail(err);
    }
  }
}

export async function terminalRoutes(app: TypedApp, service: ZomgService): Promise<void> {
  const base = '/v1/projects/:project/boxes/:name';

  app.get(
    `${base}/console`,
    {
      websocket: true,
      schema: {
        operationId: 'openConsole',
        summary: 'A terminal in the running box (WebSocket): a login shell, or a command on a pty',
        description:
          'WebSocket (core/console-protocol.ts). The request comes in the query or as the first text message `{command?, user?, cwd?, env?, cols, rows}`; then binary frames carry the bytes both ways; the client sends `{"type":"resize","cols":N,"rows":N}` (1–4096) when its window changes; the server ends with `{"type":"exit","exit_code":N}` or `{"type":"error", statusCode, code, message}`.',
        tags,
        params: BoxParams,
        querystring: ConsoleQuery,
        'x-websocket': true,
        response: responses({ 101: Type.Null({ description: 'Switching Protocols: the WebSocket session' }) }, 404, 409),
      },
    },
    (socket, request) => {
      consoleSession(socket, service, request.params, request.query);
    },
  );

  app.get(
    `${base}/processes`,
    {
      schema: {
        operationId: 'listProcesses',
        summary: "The running box's processes",
        tags,
        params: BoxParams,
        response: responses({ 200: Type.Ref(ProcessListSchema) }, 404, 409),
      },
    },
    async (request) => ({ processes: await service.listProcesses(boxRef(request.params)) }),
  );

  app.get(
    `${base}/logs`,
    {
      schema: {
        operationId: 'readLogs',
        summary: 'The log of a background exec (text/plain; streams while following)',
        tags,
        params: BoxParams,
        querystring: Type.Object(
          {
            pid: Type.Integer({ description: 'the pid `exec` with background: true answered' }),
            lines: Type.Optional(Type.Integer({ minimum: 0, description: 'only the last lines (default: all)' })),
            follow: Type.Optional(Type.Boolean({ description: 'keep streaming new output until the process ends' })),
          },
          { additionalProperties: false },
        ),
        response: responses({ 200: Streamed('text/plain', Type.String({ description: 'the log, as text (streamed while following)' })) }, 404, 409),
      },
    },
    async (request, reply) => {
      const ref = boxRef(request.params);
      const { pid, lines, follow } = request.query;
      return streamReply(request, reply, 'text/plain; charset=utf-8', (out, signal) =>
        service.readLogs(ref, pid, out, { ...(lines !== undefined ? { lines } : {}), ...(follow ? { follow: true } : {}), signal }),
      );
    },
  );
}
