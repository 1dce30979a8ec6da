/** zomg serve | pool close | project current | __compute-sizes */
import { DEFAULT_LISTEN } from '../../core/net.js';
import type { CommandSpec } from '../command.js';
import { stderr } from '../stdio.js';
import { stateDirOf } from '../settings.js';

export const systemCommands: CommandSpec[] = [
  {
    path: ['serve'],
    summary: 'run the HTTP API over the local engine',
    reconcile: 'always',
    codeCache: false,
    options: [
      { flags: '--listen <host:port>', description: `listen address (default ${DEFAULT_LISTEN})` },
      { flags: '--no-auth', description: 'no bearer token (loopback addresses only)' },
      { flags: '--allow-privileged', description: 'let clients create privileged boxes (host root; off by default)' },
      { flags: '-q, --quiet', description: 'no request log on stderr (one line per request otherwise)' },
    ],
    async run(ctx, _args, opts) {
      const target = ctx.target();
      const stateDir = target.mode === 'local' ? target.stateDir : stateDirOf(ctx.flags, process.env);
      const listen = (opts.listen as string | undefined) ?? DEFAULT_LISTEN;
      const { serve, parseListen } = await import('../../api/listen.js');
      const addr = parseListen(listen);
      if (addr.port !== 0) process.env.ZOMG_BOX_API_URL ??= `http://${addr.host.includes(':') ? `[${addr.host}]` : addr.host}:${addr.port}`;
      const client = await ctx.client();
      const server = await serve({
        service: client,
        stateDir,
        listen,
        noAuth: opts.auth === false,
        allowPrivileged: opts.allowPrivileged === true,
        logRequests: opts.quiet !== true,
        log: (line) => stderr.write(`${line}\n`),
      });
      await new Promise<void>((resolve) => {
        const stop = (): void => resolve();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      await server.close();
      return undefined;
    },
  },
  {
    path: ['pool', 'close'],
    summary: 'unmount the loopback pool and detach its loop device',
    engine: false,
    options: [{ flags: '--state-dir <dir>', description: 'state directory (default $ZOMG_HOME or /var/lib/zomg)' }],
    async run(ctx) {
      const stateDir = stateDirOf(ctx.flags, process.env);
      const { closePool } = await import('../../engine/engine.js');
      const result = await closePool(stateDir);
      return { data: result, text: result.message };
    },
  },
  {
    path: ['project', 'current'],
    summary: 'print the resolved project',
    engine: false,
    project: true,
    async run(ctx) {
      const project = ctx.project();
      return { data: { project }, text: project };
    },
  },
  {
    path: ['__compute-sizes'],
    summary: 'compute pending sizes (background job)',
    hidden: true,
    reconcile: 'never',
    codeCache: false,
    async run(ctx) {
      // Background work: it yields the CPU to what users are waiting for.
      const { setPriority } = await import('node:os');
      try {
        setPriority(19);
      } catch {
        /* not allowed: run at the normal priority */
      }
      const client = await ctx.client();
      await (client as unknown as { computeSizes?: () => Promise<void> }).computeSizes?.();
      return undefined;
    },
  },
];
