/** The built CLI as a user runs it: its entry, and `zomg serve` on a loopback port. */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const MAIN = fileURLToPath(new URL('../../bundle/cli/zomg.cjs', import.meta.url));

export interface Served {
  url: string;
  /** Ends the server (SIGTERM to the process this helper started) and waits for it. */
  stop(): Promise<void>;
  /** True while the server process has not exited. */
  alive(): boolean;
  /** What the server wrote on stderr so far. */
  stderr(): string;
}

/** Starts `zomg serve --listen 127.0.0.1:0 [extraArgs]` with `env` and resolves once it listens. */
export function startServe(env: NodeJS.ProcessEnv, extraArgs: string[] = []): Promise<Served> {
  const server = spawn(process.execPath, [MAIN, 'serve', '--listen', '127.0.0.1:0', ...extraArgs], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<void>((resolve) => server.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    let text = '';
    server.stderr.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      const m = /listening on (http:\/\/\S+)/.exec(text);
      if (m) {
        resolve({
          url: m[1] as string,
          alive: () => server.exitCode === null && server.signalCode === null,
          stderr: () => text,
          async stop() {
            if (server.exitCode === null && server.pid !== undefined) process.kill(server.pid, 'SIGTERM');
            await exited;
          },
        });
      }
    });
    server.on('exit', (code) => reject(new Error(`serve exited ${code}: ${text}`)));
  });
}
