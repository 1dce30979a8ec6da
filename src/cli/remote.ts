/** The remote client: the same ZomgService, over the HTTP API. */
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { PassThrough, Readable, Transform, type Writable } from 'node:stream';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { IncomingMessage } from 'node:http';
import { RemoteError, ToolError, ZomgError, errorFromWire } from '../core/errors.js';
import { parseBaseName } from '../core/names.js';
import { CHANNEL_STDERR, type ServerMessage } from '../core/exec-protocol.js';
import type { BoxProcess, ConsoleServerMessage, CopyToBoxOptions, ReadLogsOptions, TerminalRequest, TerminalSession } from '../core/console-protocol.js';
import type { BoxRef } from '../core/refs.js';
import { diffEntryFromJson, type DiffEntryJson } from '../core/diff.js';
import type {
  BuildBaseOptions,
  CreateBoxOptions,
  CreateSnapshotOptions,
  DiffSink,
  DiffStatusOptions,
  DiffStatusSink,
  ExecIO,
  ExecRequest,
  LifecycleResult,
  ImportBaseOptions,
  InstallBaseOptions,
  ListBoxesOptions,
  ListOptions,
  ZomgService,
} from '../core/service.js';
import { aliasOfVersion } from '../core/versions.js';
import type { BaseDetails, BaseSummary, BaseVersion, Box, Snapshot, DiffStatus, FileDiff, InstallOutcome } from '../core/types.js';
import { NDJSON, PAGE_MAX_RESULTS } from '../core/wire-constants.js';
import type {
  BaseList,
  BoxList,
  CheckpointList,
  CreateBoxBody,
  CreateBackupBody,
  CreateVolumeBody,
  CreateVolumeSnapshotBody,
  ProcessList,
  RestoreBackupBody,
  VolumeBackupList,
  VolumeList,
  VolumeSnapshotList,
} from '../core/wire.js';
import { regularFileSize } from '../system/fs.js';
import { CommandError, run } from '../system/run.js';
import { dockerfileInUpload, locateBuildContext } from '../engine/build-context.js';
import type { WebSocket as WebSocketClient } from 'ws';
import type { CreateBackupOptions, CreateVolumeOptions, DataMountSpec, RestoreBackupOptions, VolumeDiffStatusSink } from '../core/service.js';
import type { Volume, VolumeBackup, VolumeDiffStatus, VolumeSnapshot } from '../core/types.js';
import type { VolumeRef } from '../core/volumes.js';

const enc = encodeURIComponent;

/**
 * An error from the server, as the CLI says it. A 401's hint speaks HTTP (it is the API's);
 * here it says how to give the CLI a token.
 */
function wireError(status: number, body: { code?: unknown; message?: unknown; hint?: unknown }): ZomgError {
  const err = errorFromWire(status, body);
  if (err.kind !== 'unauthorized') return err;
  return new RemoteError(err.kind, err.code, err.message, {
    hint: 'pass --token <token> or set ZOMG_TOKEN (the token `zomg serve` printed on first start, stored in its state directory), or select a profile that has one: ZOMG_PROFILE_<NAME>_TOKEN with `zomg config set profile <name>`',
  });
}

interface PackedContext {
  stream: Readable;
  /** The Dockerfile's path inside the tar. */
  dockerfile: string;
  /** Settles when tar has written everything (rejects when it failed). */
  done: Promise<unknown>;
  cleanup(): Promise<void>;
}

/**
 * The build context as a tar stream for the server. It is located and checked by the same
 * code as a local build (engine/build-context.ts), so a bad context fails here with the same
 * code and message; the server checks the upload itself. A Dockerfile outside the context
 * travels inside it under a reserved name, which the server takes out again.
 */
async function packContext(contextArg: string, dockerfileArg: string | undefined, signal: AbortSignal): Promise<PackedContext> {
  const located = await locateBuildContext(contextArg, dockerfileArg);
  const { name, detached } = dockerfileInUpload(located);
  let aside: string | undefined;
  const args = ['-c', '-f', '-', '-C', located.context, '.'];
  if (detached) {
    aside = await mkdtemp(join(tmpdir(), 'zomg-context-'));
    await writeFile(join(aside, name), located.script);
    args.push('-C', aside, name);
  }
  const stream = new PassThrough({ highWaterMark: 1 << 20 });
  const done = run('tar', args, { stdout: stream, signal }).then(
    () => undefined,
    (err: unknown) => {
      stream.destroy();
      if (err instanceof CommandError && err.signal === null) {
        throw new ToolError('ZOMG_CONTEXT_UNREADABLE', `could not pack the build context: ${err.stderr.trim().split('\n').slice(-2).join(' ')}`, { cause: err });
      }
      throw err;
    },
  );
  return {
    stream,
    dockerfile: name,
    done,
    cleanup: async () => {
      if (aside !== undefined) await rm(aside, { recursive: true, force: true });
    },
  };
}
/** The JSON of an answer, or undefined when it is not JSON (a proxy's HTML page, a cut-off body). */
function parseAnswer(text: string): unknown {
  if (text.length === 0) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/**
 * The server's error from a failed answer: its status and its body text, which is the JSON
 * error `{code, message, hint?}` or, from something in between (a proxy), anything at all.
 */
function answerError(status: number, text: string): ZomgError {
  const data = parseAnswer(text);
  return wireError(status, typeof data === 'object' && data !== null ? (data as Record<string, unknown>) : {});
}

/** The error of a refused WebSocket upgrade (401, 404…), from the HTTP answer the server sent instead. */
function upgradeError(res: IncomingMessage): Promise<ZomgError> {
  return new Promise((resolve) => {
    let text = '';
    res.on('data', (c: Buffer) => (text += c.toString()));
    res.on('end', () => resolve(answerError(res.statusCode ?? 500, text)));
    res.on('error', () => resolve(answerError(res.statusCode ?? 500, text)));
  });
}

const boxPath = (ref: BoxRef): string => `/v1/projects/${enc(ref.project)}/boxes/${enc(ref.name)}`;
const volumePath = (ref: VolumeRef): string => `/v1/projects/${enc(ref.project)}/volumes/${enc(ref.name)}`;
const volumeArg = (ref: VolumeRef, project: string): string => (ref.project === project ? ref.name : `${ref.project}:${ref.name}`);

export class RemoteClient implements ZomgService {
  constructor(
    private readonly url: string,
    private readonly token: string | undefined,
  ) {}

  private async request<T>(method: string, path: string, init: { json?: unknown; body?: Readable; headers?: Record<string, string> } = {}): Promise<T> {
    const headers: Record<string, string> = { ...init.headers };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    let body: RequestInit['body'];
    if (init.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(init.json);
    } else if (init.body) {
      body = Readable.toWeb(init.body) as unknown as RequestInit['body'];
    }
    let res: Response;
    try {
      res = await fetch(`${this.url}${path}`, { method, headers, ...(body !== undefined ? { body, duplex: 'half' } : {}) } as RequestInit);
    } catch (err) {
      throw new ToolError('ZOMG_UNREACHABLE', `cannot reach the zomg API at ${this.url}`, { cause: err, hint: 'is `zomg serve` running there?' });
    }
    const text = await res.text();
    if (!res.ok) throw answerError(res.status, text);
    const data = parseAnswer(text);
    if (data === undefined && text.length > 0) throw new ToolError('ZOMG_UNREACHABLE', `the server at ${this.url} did not answer with JSON`, { hint: 'is this URL a zomg API?' });
    return data as T;
  }

  async createBox(ref: BoxRef, options: CreateBoxOptions = {}): Promise<Box> {
    const body: CreateBoxBody = {
      name: ref.name,
      ...(options.base !== undefined ? { base: options.base } : {}),
      ...(options.fork ? { fork: `${options.fork.project}:${options.fork.name}` } : {}),
      ...(options.tags ? { tags: options.tags } : {}),
      ...(options.environment ? { environment: options.environment } : {}),
      ...(options.privileged !== undefined ? { privileged: options.privileged } : {}),
      ...(options.cpus !== undefined ? { cpus: options.cpus } : {}),
      ...(options.memory !== undefined ? { memory: options.memory } : {}),
      ...(options.pids !== undefined ? { pids: options.pids } : {}),
      ...(options.publish !== undefined ? { publish: options.publish } : {}),
      ...(options.dataMounts !== undefined ? { data_mounts: options.dataMounts } : {}),
    };
    return this.request('POST', `/v1/projects/${enc(ref.project)}/boxes`, { json: body });
  }

  /**
   * Every item of a paged listing (or the first `maxResults`): fetches page after page,
   * following next_page_token, until the server says there is no more.
   */
  private async allPages<T>(path: string, query: URLSearchParams, options: ListOptions, items: (page: never) => T[]): Promise<T[]> {
    const out: T[] = [];
    let token = options.pageToken;
    for (;;) {
      const q = new URLSearchParams(query);
      if (options.maxResults !== undefined) q.set('max_results', String(Math.min(options.maxResults - out.length, PAGE_MAX_RESULTS)));
      if (token !== undefined) q.set('page_token', token);
      const page = await this.request<{ next_page_token?: string }>('GET', `${path}${q.size > 0 ? `?${q}` : ''}`);
      out.push(...items(page as never));
      token = page.next_page_token;
      if (token === undefined || (options.maxResults !== undefined && out.length >= options.maxResults)) return out;
    }
  }

  async listBoxes(options: ListBoxesOptions = {}): Promise<Box[]> {
    const q = new URLSearchParams();
    if (options.prefix) q.set('prefix', options.prefix);
    for (const [k, v] of Object.entries(options.tags ?? {})) q.append('tag', `${k}=${v}`);
    return this.allPages(`/v1/projects/${enc(options.project ?? '-')}/boxes`, q, options, (page: BoxList) => page.boxes);
  }

  async getBox(ref: BoxRef): Promise<Box> {
    return this.request('GET', boxPath(ref));
  }

  async deleteBox(ref: BoxRef): Promise<void> {
    await this.request('DELETE', boxPath(ref));
  }

  async updateBox(ref: BoxRef, fields: { tags?: Record<string, string>; environment?: Record<string, string> }): Promise<Box> {
    return this.request('PUT', boxPath(ref), { json: fields });
  }

  async stopBox(ref: BoxRef): Promise<LifecycleResult> {
    return this.request('POST', `${boxPath(ref)}/stop`);
  }

  async resumeBox(ref: BoxRef): Promise<LifecycleResult> {
    return this.request('POST', `${boxPath(ref)}/resume`);
  }

  async execBackground(ref: BoxRef, request: ExecRequest): Promise<{ pid: number; log_path: string }> {
    return this.request('POST', `${boxPath(ref)}/exec`, { json: { ...request, background: true } });
  }

  /** Streams over the WebSocket exec route (see core/exec-protocol.ts), so stdin and output flow as produced. */
  async exec(ref: BoxRef, request: ExecRequest, io: ExecIO): Promise<{ exit_code: number }> {
    const { WebSocket } = await import('ws');
    const url = `${this.url.replace(/^http/, 'ws')}${boxPath(ref)}/exec/ws`;
    const socket = new WebSocket(url, { headers: this.token ? { authorization: `Bearer ${this.token}` } : {} });
    return new Promise((resolve, reject) => {
      let settled = false;
      const finish = (fn: () => void): void => {
        if (settled) return;
        settled = true;
        io.stdin?.unpipe();
        io.stdin?.pause();
        fn();
      };
      socket.on('unexpected-response', (_req, res) => void upgradeError(res).then((err) => finish(() => reject(err))));
      socket.on('error', (err) => finish(() => reject(new ToolError('ZOMG_UNREACHABLE', `cannot reach the zomg API at ${this.url}`, { cause: err }))));
      socket.on('open', () => {
        socket.send(JSON.stringify(request));
        if (io.stdin) {
          io.stdin.on('data', (chunk: Buffer) => socket.send(chunk, { binary: true }));
          io.stdin.on('end', () => socket.send(JSON.stringify({ type: 'stdin_end' })));
        } else socket.send(JSON.stringify({ type: 'stdin_end' }));
      });
      socket.on('message', (data: Buffer, isBinary: boolean) => {
        if (isBinary) {
          (data[0] === CHANNEL_STDERR ? io.stderr : io.stdout).write(data.subarray(1));
          return;
        }
        const msg = parseAnswer(data.toString('utf8')) as ServerMessage | undefined;
        if (msg?.type === 'exit') finish(() => resolve({ exit_code: msg.exit_code }));
        else if (msg?.type === 'error') finish(() => reject(wireError(msg.statusCode, msg)));
        else finish(() => reject(new ToolError('ZOMG_EXEC_INTERRUPTED', 'the server sent a message this client does not understand')));
      });
      socket.on('close', () => finish(() => reject(new ToolError('ZOMG_EXEC_INTERRUPTED', 'the connection closed before the command finished'))));
      // Aborting closes the socket; the server then kills the command in the box.
      const onAbort = (): void => socket.close();
      if (io.signal?.aborted) onAbort();
      else io.signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Opens a WebSocket to `path`; rejects with the server's error when the upgrade is refused (401, 404…). */
  private async openSocket(path: string): Promise<WebSocketClient> {
    const { WebSocket } = await import('ws');
    const socket = new WebSocket(`${this.url.replace(/^http/, 'ws')}${path}`, { headers: this.token ? { authorization: `Bearer ${this.token}` } : {} });
    return new Promise((resolve, reject) => {
      socket.once('open', () => resolve(socket));
      socket.once('unexpected-response', (_req, res) => void upgradeError(res).then(reject));
      socket.once('error', (err) => reject(new ToolError('ZOMG_UNREACHABLE', `cannot reach the zomg API at ${this.url}`, { cause: err, hint: 'is `zomg serve` running there?' })));
    });
  }

  /** A terminal over the console WebSocket (core/console-protocol.ts). */
  async openTerminal(ref: BoxRef, request: TerminalRequest): Promise<TerminalSession> {
    const socket = await this.openSocket(`${boxPath(ref)}/console`);
    socket.send(JSON.stringify(request));
    const listeners: Array<(chunk: Buffer) => void> = [];
    const exited = new Promise<number>((resolve, reject) => {
      let settled = false;
      socket.on('message', (data: Buffer, isBinary: boolean) => {
        if (isBinary) {
          for (const l of listeners) l(data);
          return;
        }
        const msg = parseAnswer(data.toString('utf8')) as ConsoleServerMessage | undefined;
        settled = true;
        if (msg?.type === 'exit') resolve(msg.exit_code);
        else if (msg?.type === 'error') reject(wireError(msg.statusCode, msg));
        else reject(new ToolError('ZOMG_CONSOLE_INTERRUPTED', 'the server sent a message this client does not understand'));
      });
      socket.on('error', () => undefined);
      socket.on('close', () => {
        if (!settled) reject(new ToolError('ZOMG_CONSOLE_INTERRUPTED', 'the connection to the server closed before the command finished'));
      });
    });
    exited.catch(() => undefined);
    const open = (): boolean => socket.readyState === socket.OPEN;
    return {
      onData: (listener) => void listeners.push(listener),
      write: (data) => {
        if (open()) socket.send(typeof data === 'string' ? Buffer.from(data) : data, { binary: true });
      },
      resize: (cols, rows) => {
        if (open()) socket.send(JSON.stringify({ type: 'resize', cols, rows }));
      },
      close: () => socket.close(),
      exited,
    };
  }

  /** GET a streamed body into `out`; errors before the first byte are the server's JSON errors. */
  private async download(path: string, out: Writable, signal: AbortSignal | undefined, what: string): Promise<void> {
    const headers: Record<string, string> = {};
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    let res: Response;
    try {
      res = await fetch(`${this.url}${path}`, { headers, ...(signal ? { signal } : {}) });
    } catch (err) {
      if (signal?.aborted) return;
      throw new ToolError('ZOMG_UNREACHABLE', `cannot reach the zomg API at ${this.url}`, { cause: err, hint: 'is `zomg serve` running there?' });
    }
    if (!res.ok) throw answerError(res.status, await res.text());
    if (!res.body) return;
    try {
      for await (const chunk of Readable.fromWeb(res.body as Parameters<typeof Readable.fromWeb>[0])) {
        if (!out.write(chunk as Buffer)) await new Promise((resolve) => out.once('drain', resolve));
      }
    } catch (err) {
      if (signal?.aborted) return;
      throw new ToolError('ZOMG_STREAM_INTERRUPTED', `the server stopped sending ${what} before the end`, { cause: err, hint: 'the server log says why' });
    }
  }

  async copyFromBox(ref: BoxRef, path: string, out: Writable, options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.download(`${boxPath(ref)}/files?${new URLSearchParams({ path })}`, out, options.signal, 'the files');
  }

  async copyToBox(ref: BoxRef, path: string, tar: Readable, options: CopyToBoxOptions = {}): Promise<void> {
    const q = new URLSearchParams({ path });
    if (options.into) q.set('into', 'true');
    await this.request('PUT', `${boxPath(ref)}/files?${q}`, { body: tar, headers: { 'content-type': 'application/x-tar' } });
  }

  async listProcesses(ref: BoxRef): Promise<BoxProcess[]> {
    return (await this.request<ProcessList>('GET', `${boxPath(ref)}/processes`)).processes;
  }

  async readLogs(ref: BoxRef, pid: number, out: Writable, options: ReadLogsOptions = {}): Promise<void> {
    const q = new URLSearchParams({ pid: String(pid) });
    if (options.lines !== undefined) q.set('lines', String(options.lines));
    if (options.follow) q.set('follow', 'true');
    await this.download(`${boxPath(ref)}/logs?${q}`, out, options.signal, 'the log');
  }

  async listBases(options: ListOptions = {}): Promise<BaseSummary[]> {
    return this.allPages('/v1/bases', new URLSearchParams(), options, (page: BaseList) => page.bases);
  }

  async inspectBase(name: string, options: { tag?: string } = {}): Promise<BaseDetails> {
    return this.request('GET', `/v1/bases/${enc(name)}${options.tag !== undefined ? `?tag=${enc(options.tag)}` : ''}`);
  }

  async importBase(name: string, source: string | Readable, options: ImportBaseOptions = {}): Promise<BaseVersion> {
    let stream: Readable;
    let total = options.totalBytes;
    if (typeof source === 'string') {
      total = regularFileSize(source);
      stream = createReadStream(source);
    } else stream = source;
    if (options.onProgress && total !== undefined) {
      let done = 0;
      const onProgress = options.onProgress;
      stream.on('data', (chunk: Buffer) => {
        done += chunk.length;
        onProgress({ phase: 'upload', done, total });
      });
    }
    const qs = options.parent !== undefined ? `?parent=${enc(options.parent)}` : '';
    return this.request('POST', `/v1/bases/${enc(name)}/versions${qs}`, {
      body: stream,
      headers: { 'content-type': 'application/octet-stream', ...(total !== undefined ? { 'content-length': String(total) } : {}) },
    });
  }

  async installBase(name: string, options: InstallBaseOptions = {}): Promise<InstallOutcome> {
    options.onProgress?.({ phase: 'build (on the server)' });
    return this.request('POST', `/v1/bases/${enc(name)}/install`, { json: { update: options.update ?? false } });
  }

  /**
   * Uploads the context (tar) and builds on the server, rendering its output as it streams
   * back (NDJSON): the server's engine and its podman store on the pool do the work.
   */
  async buildBase(name: string, options: BuildBaseOptions = {}): Promise<BaseVersion> {
    parseBaseName(name);
    const q = new URLSearchParams();
    if (options.builder !== undefined) q.set('builder', options.builder);
    const stopTar = new AbortController();
    let body: Readable;
    let packed: PackedContext | undefined;
    if (options.context !== undefined && typeof options.context !== 'string') {
      body = options.context;
      if (options.dockerfile !== undefined) q.set('dockerfile', options.dockerfile);
    } else {
      packed = await packContext(options.context ?? '.', options.dockerfile, stopTar.signal);
      body = packed.stream;
      const onProgress = options.onProgress;
      if (onProgress) {
        // The context's size is not known before tar is done: the bytes sent so far.
        let sent = 0;
        const counted = new Transform({
          transform(chunk: Buffer, _enc, cb) {
            sent += chunk.length;
            onProgress({ phase: 'upload', done: sent });
            cb(null, chunk);
          },
        });
        body = packed.stream.pipe(counted);
        packed.stream.once('error', (err) => counted.destroy(err));
      }
      q.set('dockerfile', packed.dockerfile);
    }
    const stopFetch = new AbortController();
    const signal = options.signal ? AbortSignal.any([options.signal, stopFetch.signal]) : stopFetch.signal;
    // tar failing must end the upload (the server would see a truncated archive otherwise).
    let tarError: unknown;
    const tarFailure = packed?.done.catch((err: unknown) => {
      tarError = err;
      stopFetch.abort();
    });
    const headers: Record<string, string> = { 'content-type': 'application/x-tar', accept: `${NDJSON}, application/json` };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    try {
      options.onProgress?.({ phase: 'upload' });
      let res: Response;
      try {
        res = await fetch(`${this.url}/v1/bases/${enc(name)}/build?${q}`, {
          method: 'POST',
          headers,
          body: Readable.toWeb(body) as unknown as RequestInit['body'],
          duplex: 'half',
          signal,
        } as RequestInit);
      } catch (err) {
        // A failed tar is why the upload broke: it is settled by now (it ended the stream).
        await nextTurn();
        if (tarError instanceof ZomgError) throw tarError;
        if (options.signal?.aborted) throw err;
        throw new ToolError('ZOMG_UNREACHABLE', `cannot reach the zomg API at ${this.url}`, { cause: err, hint: 'is `zomg serve` running there?' });
      }
      if (!(res.headers.get('content-type') ?? '').includes(NDJSON)) {
        const text = await res.text();
        if (!res.ok) throw answerError(res.status, text);
        const data = parseAnswer(text);
        if (data === undefined) throw new ToolError('ZOMG_UNREACHABLE', `the server at ${this.url} did not answer with JSON`, { hint: 'is this URL a zomg API?' });
        return data as BaseVersion;
      }
      if (!res.body) throw new ToolError('ZOMG_BUILD_INTERRUPTED', 'the server sent no build output');
      const lines = createInterface({ input: Readable.fromWeb(res.body as Parameters<typeof Readable.fromWeb>[0]), crlfDelay: Infinity });
      for await (const line of lines) {
        if (line.trim() === '') continue;
        const event = JSON.parse(line) as { type: string; line?: string; phase?: string; version?: BaseVersion; statusCode?: number; code?: string; message?: string; hint?: string };
        if (event.type === 'line') options.onProgress?.({ phase: 'build', line: event.line ?? '' });
        else if (event.type === 'phase') options.onProgress?.({ phase: event.phase ?? '' });
        else if (event.type === 'result' && event.version) return event.version;
        else if (event.type === 'error') throw wireError(event.statusCode ?? 500, event);
      }
      throw new ToolError('ZOMG_BUILD_INTERRUPTED', 'the connection closed before the build finished', { hint: 'run `zomg base inspect` to see whether it was recorded' });
    } finally {
      stopTar.abort();
      await tarFailure;
      await packed?.cleanup();
    }
  }

  async saveBase(name: string, box: BoxRef): Promise<BaseVersion> {
    return this.request('POST', `/v1/projects/${enc(box.project)}/bases`, { json: { box: box.name, name } });
  }

  async deleteBaseAlias(name: string): Promise<void> {
    await this.request('DELETE', `/v1/bases/${enc(name)}`);
  }

  async deleteBaseVersion(version: string): Promise<void> {
    const alias = aliasOfVersion(version);
    await this.request('DELETE', `/v1/bases/${enc(alias)}/versions/${enc(version)}`);
  }

  async createSnapshot(ref: BoxRef, options: CreateSnapshotOptions = {}): Promise<Snapshot> {
    return this.request('POST', `${boxPath(ref)}/checkpoints`, { json: options });
  }

  async listSnapshots(ref: BoxRef, options: ListOptions = {}): Promise<Snapshot[]> {
    return this.allPages(`${boxPath(ref)}/checkpoints`, new URLSearchParams(), options, (page: CheckpointList) => page.checkpoints);
  }

  async getSnapshot(ref: BoxRef, name: string): Promise<Snapshot> {
    return this.request('GET', `${boxPath(ref)}/checkpoints/${enc(name)}`);
  }

  async restoreSnapshot(ref: BoxRef, name: string): Promise<Snapshot> {
    return this.request('POST', `${boxPath(ref)}/checkpoints/${enc(name)}/restore`);
  }

  async deleteSnapshot(ref: BoxRef, name: string): Promise<void> {
    await this.request('DELETE', `${boxPath(ref)}/checkpoints/${enc(name)}`);
  }

  async diffStatus(ref: BoxRef, options: DiffStatusOptions = {}): Promise<DiffStatus> {
    const q = new URLSearchParams();
    if (options.against !== undefined) q.set('against', options.against);
    if (options.to !== undefined) q.set('to', options.to);
    return this.request('GET', `${boxPath(ref)}/diff${q.size > 0 ? `?${q}` : ''}`);
  }

  /** The NDJSON form of GET …/diff (api/diff-stream.ts), handed to `sink` line by line. */
  async diffStatusStream(ref: BoxRef, sink: DiffStatusSink, options: DiffStatusOptions = {}): Promise<void> {
    return this.diffStream(`${boxPath(ref)}/diff`, sink, options);
  }

  /**
   * GET `path` (a box's or a volume's …/diff) as NDJSON, handed to `sink` line by line: the
   * head, then each change. A server that answers the whole JSON object instead (one from
   * before it streamed this diff) is read whole and handed over the same way.
   */
  private async diffStream<H>(path: string, sink: DiffSink<H>, options: DiffStatusOptions): Promise<void> {
    const q = new URLSearchParams();
    if (options.against !== undefined) q.set('against', options.against);
    if (options.to !== undefined) q.set('to', options.to);
    const headers: Record<string, string> = { accept: NDJSON };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    let res: Response;
    try {
      res = await fetch(`${this.url}${path}${q.size > 0 ? `?${q}` : ''}`, { headers, ...(options.signal ? { signal: options.signal } : {}) });
    } catch (err) {
      throw new ToolError('ZOMG_UNREACHABLE', `cannot reach the zomg API at ${this.url}`, { cause: err, hint: 'is `zomg serve` running there?' });
    }
    if (!res.ok || !res.body) throw answerError(res.status, await res.text());
    const badAnswer = (what: string, cause?: unknown): ToolError =>
      new ToolError('ZOMG_BAD_RESPONSE', `the server's diff answer ${what}`, { ...(cause !== undefined ? { cause } : {}), hint: 'check the server log, and that a proxy in between passes the answer through' });
    if (!(res.headers.get('content-type') ?? '').includes(NDJSON)) {
      const whole = parseAnswer(await res.text());
      if (typeof whole !== 'object' || whole === null || !Array.isArray((whole as { changes?: unknown }).changes)) throw badAnswer('is neither NDJSON nor a diff status');
      const { changes, ...head } = whole as { changes: DiffEntryJson[] };
      await sink.head(head as H);
      for (const change of changes) {
        const wait = sink.change(diffEntryFromJson(change));
        if (wait) await wait;
      }
      return;
    }
    const input = Readable.fromWeb(res.body as Parameters<typeof Readable.fromWeb>[0]);
    try {
      let first = true;
      for await (const line of createInterface({ input, crlfDelay: Infinity })) {
        if (line === '') continue;
        let value: Record<string, unknown>;
        try {
          value = JSON.parse(line) as Record<string, unknown>;
        } catch (err) {
          throw badAnswer('has a line that is not JSON (cut off?)', err);
        }
        if (value.error !== undefined) {
          const body = value.error as Record<string, unknown>;
          throw wireError(typeof body.statusCode === 'number' ? body.statusCode : 500, body);
        }
        if (first) {
          await sink.head(value as unknown as H);
          first = false;
          continue;
        }
        const wait = sink.change(diffEntryFromJson(value as unknown as DiffEntryJson));
        if (wait) await wait;
      }
      if (first) throw badAnswer('ended before its first line');
    } finally {
      // Done, or given up (a sink that failed, an abort): the connection is let go either way.
      input.destroy();
    }
  }

  async diffFile(ref: BoxRef, path: string, options: { against?: string } = {}): Promise<FileDiff> {
    const q = new URLSearchParams({ path });
    if (options.against !== undefined) q.set('against', options.against);
    return this.request('GET', `${boxPath(ref)}/diff/file?${q}`);
  }

  async createVolume(ref: VolumeRef, options: CreateVolumeOptions = {}): Promise<Volume> {
    const body: CreateVolumeBody = {
      name: ref.name,
      ...(options.from !== undefined ? { from: volumeArg(options.from, ref.project) } : {}),
      ...(options.fromSnapshot !== undefined ? { from_snapshot: options.fromSnapshot } : {}),
    };
    return this.request('POST', `/v1/projects/${enc(ref.project)}/volumes`, { json: body });
  }

  async listVolumes(options: { project?: string } = {}): Promise<Volume[]> {
    return (await this.request<VolumeList>('GET', `/v1/projects/${enc(options.project ?? '-')}/volumes`)).volumes;
  }

  async getVolume(ref: VolumeRef): Promise<Volume> {
    return this.request('GET', volumePath(ref));
  }

  async deleteVolume(ref: VolumeRef): Promise<void> {
    await this.request('DELETE', volumePath(ref));
  }

  async attachVolume(box: BoxRef, mount: DataMountSpec): Promise<Box> {
    return this.request('POST', `${boxPath(box)}/data-mounts`, { json: mount });
  }

  async detachVolume(box: BoxRef, name: string): Promise<Box> {
    return this.request('DELETE', `${boxPath(box)}/data-mounts/${enc(name)}`);
  }

  async createVolumeSnapshot(ref: VolumeRef, options: CreateSnapshotOptions = {}): Promise<VolumeSnapshot> {
    const body: CreateVolumeSnapshotBody = options;
    return this.request('POST', `${volumePath(ref)}/snapshots`, { json: body });
  }

  async listVolumeSnapshots(ref: VolumeRef): Promise<VolumeSnapshot[]> {
    return (await this.request<VolumeSnapshotList>('GET', `${volumePath(ref)}/snapshots`)).snapshots;
  }

  async restoreVolumeSnapshot(ref: VolumeRef, name: string): Promise<VolumeSnapshot> {
    return this.request('POST', `${volumePath(ref)}/snapshots/${enc(name)}/restore`);
  }

  async deleteVolumeSnapshot(ref: VolumeRef, name: string): Promise<void> {
    await this.request('DELETE', `${volumePath(ref)}/snapshots/${enc(name)}`);
  }

  async volumeDiffStatus(ref: VolumeRef, options: DiffStatusOptions = {}): Promise<VolumeDiffStatus> {
    const q = new URLSearchParams();
    if (options.against !== undefined) q.set('against', options.against);
    if (options.to !== undefined) q.set('to', options.to);
    return this.request('GET', `${volumePath(ref)}/diff${q.size > 0 ? `?${q}` : ''}`);
  }

  /** The NDJSON form of GET …/volumes/{volume}/diff, handed to `sink` line by line. */
  async volumeDiffStatusStream(ref: VolumeRef, sink: VolumeDiffStatusSink, options: DiffStatusOptions = {}): Promise<void> {
    return this.diffStream(`${volumePath(ref)}/diff`, sink, options);
  }

  async volumeDiffFile(ref: VolumeRef, path: string, options: { against?: string } = {}): Promise<FileDiff> {
    const q = new URLSearchParams({ path });
    if (options.against !== undefined) q.set('against', options.against);
    return this.request('GET', `${volumePath(ref)}/diff/file?${q}`);
  }

  async createBackup(ref: VolumeRef, options: CreateBackupOptions): Promise<VolumeBackup> {
    const body: CreateBackupBody = { to: options.to, ...(options.name !== undefined ? { name: options.name } : {}) };
    return this.request('POST', `${volumePath(ref)}/backups`, { json: body });
  }

  async listBackups(from: string, options: { project?: string; volume?: string } = {}): Promise<VolumeBackup[]> {
    const q = new URLSearchParams({ from });
    if (options.volume !== undefined) q.set('volume', options.volume);
    return (await this.request<VolumeBackupList>('GET', `/v1/projects/${enc(options.project ?? '-')}/backups?${q}`)).backups;
  }

  async restoreBackup(options: RestoreBackupOptions): Promise<Volume> {
    const body: RestoreBackupBody = {
      from: options.from,
      volume: volumeArg(options.source, options.to.project),
      ...(options.backup !== undefined ? { backup: options.backup } : {}),
      to: options.to.name,
    };
    return this.request('POST', `/v1/projects/${enc(options.to.project)}/backups/restore`, { json: body });
  }

  async close(): Promise<void> {}
}
