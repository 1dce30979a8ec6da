/**
 * A status diff as NDJSON (`Accept: application/x-ndjson`), for `GET …/boxes/{name}/diff` and
 * `GET …/volumes/{volume}/diff`: the first line is the status without its changes (a box's
 * `{box, project, against, to, method}`, a volume's `{volume, project, against, to, method}`),
 * then one line per change (`{path, path_b64?, kind}`), in path order, written as they are
 * verified. An error before the first line is an ordinary error response; one after it (the
 * status line is sent by then) is a last line `{"error": {statusCode, code, error, message, hint?}}`.
 */
import { Readable } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { diffEntryToJson } from '../core/diff.js';
import type { DiffSink } from '../core/service.js';
import { NDJSON } from '../core/wire-constants.js';
import { toErrorBody } from './errors.js';

/** True when the client asked for NDJSON. */
export const wantsNdjson = (request: FastifyRequest): boolean => (request.headers.accept ?? '').includes(NDJSON);

/** Lines queued between the diff and the response; the diff waits while too many are queued. */
const HIGH_WATER = 1024;

/** The NDJSON form, as the OpenAPI description of a diff route says it (`head`: the first line's fields). */
export const ndjsonDescription = (head: string): string =>
  `With Accept: application/x-ndjson the answer (200, Content-Type application/x-ndjson) streams as the diff is verified: a first line ${head} (the status without its changes), then one line per change {path, path_b64?, kind} in path order. An error before the first line is an ordinary error response; one after it is a last line {"error": {statusCode, code, error, message, hint?}}. Without that Accept header, the whole status as one JSON object.`;

/**
 * Answers with the diff that `diff` hands to its sink, as NDJSON. `diff` is the service's
 * streaming call (diffStatusStream, volumeDiffStatusStream) with the request's options and
 * the signal, which aborts it when the client goes away.
 */
export async function sendDiffNdjson<H>(diff: (sink: DiffSink<H>, signal: AbortSignal) => Promise<void>, reply: FastifyReply): Promise<FastifyReply> {
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
  // A diff waiting for room in the queue is let go at once when the response goes away.
  abort.signal.addEventListener('abort', () => {
    resume?.();
    resume = undefined;
  });
  let headSeen!: () => void;
  const headReady = new Promise<void>((resolve) => (headSeen = resolve));
  // Returns nothing (the diff need not wait) until the queue is full. Once the response is
  // gone it throws, so the diff ends (letting go of its lock and temporary snapshot) rather
  // than filling a queue nobody reads, or waiting for a reader that will not come back.
  const push = (value: unknown): Promise<void> | undefined => {
    abort.signal.throwIfAborted();
    queue.push(`${JSON.stringify(value)}\n`);
    poke();
    return queue.length >= HIGH_WATER ? new Promise<void>((resolve) => (resume = resolve)) : undefined;
  };
  const done = diff(
    {
      head: (head) => {
        const p = push(head);
        headSeen();
        return p;
      },
      change: (entry) => push(diffEntryToJson(entry)),
    },
    abort.signal,
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
