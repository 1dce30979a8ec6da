/** Answers that stream (a tar of files, a followed log) but may still fail as plain JSON errors. */
import { PassThrough, Writable } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';

/**
 * Runs `produce` with a writable that becomes the 200 response body on its first byte.
 * Until then a failure is an ordinary error answer (JSON, status from the error table);
 * after it, the response is cut short (the client sees an incomplete body, never a
 * truncated archive that looks whole). A client that goes away aborts `signal`.
 */
export async function streamReply(
  request: FastifyRequest,
  reply: FastifyReply,
  contentType: string,
  produce: (out: Writable, signal: AbortSignal) => Promise<void>,
): Promise<FastifyReply> {
  const abort = new AbortController();
  reply.raw.on('close', () => {
    if (!reply.raw.writableFinished) abort.abort();
  });
  const body = new PassThrough({ highWaterMark: 1 << 20 });
  let streaming = false;
  const start = (): void => {
    if (streaming) return;
    streaming = true;
    void reply.status(200).header('content-type', contentType).header('cache-control', 'no-store').send(body);
  };
  const out = new Writable({
    highWaterMark: 1 << 20,
    write(chunk: Buffer, _enc, cb) {
      start();
      if (body.write(chunk)) cb();
      else {
        const go = (): void => {
          abort.signal.removeEventListener('abort', go);
          body.off('drain', go);
          cb();
        };
        body.once('drain', go);
        abort.signal.addEventListener('abort', go, { once: true });
      }
    },
  });
  try {
    await produce(out, abort.signal);
    await new Promise<void>((resolve) => out.end(resolve));
    start();
    body.end();
  } catch (err) {
    if (!streaming) throw err;
    request.log.warn({ err }, 'stream ended by a failure');
    body.destroy(err instanceof Error ? err : new Error(String(err)));
  }
  return reply;
}
