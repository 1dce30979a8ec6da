/** The remote client: the same ZomgService, over the HTTP API. */
import { createReadStream, statSync } from 'node:fs';
import { Readable } from 'node:stream';
import { InvalidArgumentError, ToolError, errorFromWire } from '../core/errors.js';
import { CHANNEL_STDERR, type ServerMessage } from '../core/exec-protocol.js';
import type { BoxRef } from '../core/refs.js';
import type {
  CreateBoxOptions,
  CreateCheckpointOptions,
  DiffStatusOptions,
  ExecIO,
  ExecRequest,
  LifecycleResult,
  ImportBaseOptions,
  InstallBaseOptions,
  ListBoxesOptions,
  ZomgService,
} from '../core/service.js';
import type { BaseDetails, BaseSummary, BaseVersion, Box, Checkpoint, DiffStatus, FileDiff, InstallOutcome } from '../core/types.js';

const enc = encodeURIComponent;
const boxPath = (ref: BoxRef): string => `/v1/projects/${enc(ref.project)}/boxes/${enc(ref.name)}`;

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
    const data: unknown = text.length > 0 ? JSON.parse(text) : undefined;
    if (!res.ok) throw errorFromWire(res.status, (data ?? {}) as Record<string, unknown>);
    return data as T;
  }

  async createBox(ref: BoxRef, options: CreateBoxOptions = {}): Promise<Box> {
    return this.request('POST', `/v1/projects/${enc(ref.project)}/boxes`, {
      json: {
        name: ref.name,
        ...(options.base !== undefined ? { base: options.base } : {}),
        ...(options.fork ? { fork: `${options.fork.project}:${options.fork.name}` } : {}),
        ...(options.tags ? { tags: options.tags } : {}),
        ...(options.environment ? { environment: options.environment } : {}),
      },
    });
  }

  async listBoxes(options: ListBoxesOptions = {}): Promise<Box[]> {
    const q = new URLSearchParams();
    if (options.prefix) q.set('prefix', options.prefix);
    for (const [k, v] of Object.entries(options.tags ?? {})) q.append('tag', `${k}=${v}`);
    if (options.maxResults !== undefined) q.set('max_results', String(options.maxResults));
    const qs = q.size > 0 ? `?${q}` : '';
    return (await this.request<{ boxes: Box[] }>('GET', `/v1/projects/${enc(options.project ?? '-')}/boxes${qs}`)).boxes;
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
      socket.on('unexpected-response', (_req, res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => {
          let body: Record<string, unknown> = {};
          try {
            body = JSON.parse(text) as Record<string, unknown>;
          } catch {
            /* not JSON */
          }
          finish(() => reject(errorFromWire(res.statusCode ?? 500, body)));
        });
      });
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
        const msg = JSON.parse(data.toString('utf8')) as ServerMessage;
        if (msg.type === 'exit') finish(() => resolve({ exit_code: msg.exit_code }));
        else finish(() => reject(errorFromWire(msg.statusCode, msg)));
      });
      socket.on('close', () => finish(() => reject(new ToolError('ZOMG_EXEC_INTERRUPTED', 'the connection closed before the command finished'))));
    });
  }

  async listBases(): Promise<BaseSummary[]> {
    return (await this.request<{ bases: BaseSummary[] }>('GET', '/v1/bases')).bases;
  }

  async inspectBase(name: string, options: { tag?: string } = {}): Promise<BaseDetails> {
    return this.request('GET', `/v1/bases/${enc(name)}${options.tag !== undefined ? `?tag=${enc(options.tag)}` : ''}`);
  }

  async importBase(name: string, source: string | Readable, options: ImportBaseOptions = {}): Promise<BaseVersion> {
    let stream: Readable;
    let total = options.totalBytes;
    if (typeof source === 'string') {
      let st;
      try {
        st = statSync(source);
      } catch {
        throw new InvalidArgumentError(`file "${source}" does not exist`, { code: 'ZOMG_FILE_NOT_FOUND' });
      }
      if (!st.isFile()) throw new InvalidArgumentError(`"${source}" is not a regular file`, { code: 'ZOMG_NOT_A_FILE' });
      total = st.size;
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

  async deleteBaseAlias(name: string): Promise<void> {
    await this.request('DELETE', `/v1/bases/${enc(name)}`);
  }

  async deleteBaseVersion(version: string): Promise<void> {
    const alias = version.replace(/-v\d{14}$/, '');
    await this.request('DELETE', `/v1/bases/${enc(alias)}/versions/${enc(version)}`);
  }

  async createCheckpoint(ref: BoxRef, options: CreateCheckpointOptions = {}): Promise<Checkpoint> {
    return this.request('POST', `${boxPath(ref)}/checkpoints`, { json: options });
  }

  async listCheckpoints(ref: BoxRef): Promise<Checkpoint[]> {
    return (await this.request<{ checkpoints: Checkpoint[] }>('GET', `${boxPath(ref)}/checkpoints`)).checkpoints;
  }

  async getCheckpoint(ref: BoxRef, name: string): Promise<Checkpoint> {
    return this.request('GET', `${boxPath(ref)}/checkpoints/${enc(name)}`);
  }

  async restoreCheckpoint(ref: BoxRef, name: string): Promise<Checkpoint> {
    return this.request('POST', `${boxPath(ref)}/checkpoints/${enc(name)}/restore`);
  }

  async deleteCheckpoint(ref: BoxRef, name: string): Promise<void> {
    await this.request('DELETE', `${boxPath(ref)}/checkpoints/${enc(name)}`);
  }

  async diffStatus(ref: BoxRef, options: DiffStatusOptions = {}): Promise<DiffStatus> {
    const q = new URLSearchParams();
    if (options.against !== undefined) q.set('against', options.against);
    if (options.to !== undefined) q.set('to', options.to);
    return this.request('GET', `${boxPath(ref)}/diff${q.size > 0 ? `?${q}` : ''}`);
  }

  async diffFile(ref: BoxRef, path: string, options: { against?: string } = {}): Promise<FileDiff> {
    const q = new URLSearchParams({ path });
    if (options.against !== undefined) q.set('against', options.against);
    return this.request('GET', `${boxPath(ref)}/diff/file?${q}`);
  }

  async close(): Promise<void> {}
}
