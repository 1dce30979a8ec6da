/**
 * `GET …/boxes/{name}/diff` as NDJSON (`Accept: application/x-ndjson`): the first line is
 * the status without its changes (`{box, project, against, to, method}`), then one line
 * per change (`{path, path_b64?, kind}`), in path order, written as they are verified.
 * An error before the first line is an ordinary error response; one after it (the status
 * line is sent by then) is a last line `{"error": {statusCode, code, error, message, hint?}}`.
 */
import { Readable } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { diffEntryToJson } from '../core/diff.js';
import type { BoxRef } from '../core/refs.js';
import type { DiffStatusOptions, ZomgService } from '../core/service.js';
import { NDJSON } from '../core/wire.js';
import { toErrorBody } from './errors.js';

/** True when the client asked for NDJSON. */
export const wantsNdjson = (request: FastifyRequest): boolean => (request.headers.accept ?? '').includes(NDJSON);

/** Lines queued between the diff and the response; the diff waits while too many are queued. */
const HIGH_WATER = 1024;

export async function sendDiffNdjson(
  service: ZomgService,
  ref: BoxRef,
  options: DiffStatusOptions,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const abort = new AbortController();
  // The response's close (not the request's, which ends with its empty body): finished, or the client left.
  reply.raw.on('close', () => {
    if (!reply.raw.writableFinished) abort.abort(new Error('the client went away'));
  });
  let queue: string[] = [];
  let ended: { err?: unknown } | undefined;
  let wake: (() => void) | undefined;
  let resume: (() => void) | undefined;
  const poke = (): void => {
    wake?.();
    wake = undefined;
  };
  let headSeen!: () => void;
  const headReady = new Promise<void>((resolve) => (headSeen = resolve));
  const push = async (value: unknown): Promise<void> => {
    queue.push(`${JSON.stringify(value)}\n`);
    poke();
    if (queue.length >= HIGH_WATER) await new Promise<void>((resolve) => (resume = resolve));
  };
  const done = service
    .diffStatusStream(
      ref,
      {
        head: (head) => {
          const p = push(head);
          headSeen();
          return p;
        },
        change: (entry) => push(diffEntryToJson(entry)),
      },
      { ...options, signal: abort.signal },
    )
    .then(
      () => {
        ended = {};
      },
      (err: unknown) => {
        ended = { err };
      },
    )
    .finally(poke);
  await Promise.race([headReady, done]);
  if (queue.length === 0 && ended?.err !== undefined) throw ended.err;

  async function* lines(): AsyncGenerator<string> {
    try {
      for (;;) {
        if (queue.length > 0) {
          const batch = queue.join('');
          queue = [];
          resume?.();
          resume = undefined;
          yield batch;
          continue;
        }
        if (ended) {
          if (ended.err !== undefined) yield `${JSON.stringify({ error: toErrorBody(ended.err) })}\n`;
          return;
        }
        await new Promise<void>((resolve) => (wake = resolve));
      }
    } finally {
      if (!ended) abort.abort(new Error('the response was closed'));
      resume?.();
      await done;
    }
  }
  return reply.type(NDJSON).send(Readable.from(lines(), { objectMode: false }));
}
