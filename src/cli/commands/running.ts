/** zomg stop | resume | exec */
import { UsageError } from '../../core/errors.js';
import { parseEnvAssignment } from '../../core/names.js';
import type { ExecRequest, ZomgService } from '../../core/service.js';
import { Writable } from 'node:stream';
import type { CommandSpec, RunContext } from '../command.js';
import { stderr, stdout } from '../stdio.js';
import { attachTerminal, notATty } from './terminals.js';

/** Collects what a command writes (exec --json: the output is part of the result). */
function collector(): { stream: Writable; text(): string } {
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
}

async function execIn(ctx: RunContext, client: ZomgService, boxArg: string, req: ExecRequest, background: boolean, tty = false): Promise<{ code: number; text?: string; data?: unknown }> {
  const ref = ctx.box(boxArg);
  // -t: a pty in the box, this terminal attached in raw mode (cli/commands/terminals.ts).
  if (tty) return { code: await attachTerminal(client, ref, req) };
  if (background) {
    const bg = await client.execBackground(ref, req);
    return { code: 0, text: String(bg.pid), data: bg };
  }
  const buffered = ctx.flags.json === true ? { stdout: collector(), stderr: collector() } : undefined;
  // Stdin is always passed through (from a terminal too, line by line: there is no pty, so a
  // shell reads commands without a prompt); it is released as soon as the command ends.
  const stdin = process.stdin;
  // Ctrl-C or SIGTERM ends the command in the box (and lets an ephemeral box be deleted)
  // instead of killing the CLI half-way.
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const { exit_code } = await client.exec(ref, req, {
      ...(stdin ? { stdin } : {}),
      stdout: buffered?.stdout.stream ?? stdout.stream(),
      stderr: buffered?.stderr.stream ?? stderr.stream(),
      signal: stop.signal,
    });
    const code = stop.signal.aborted ? 130 : exit_code;
    if (buffered) return { code, data: { exit_code: code, stdout: buffered.stdout.text(), stderr: buffered.stderr.text() } };
    return { code };
  } catch (err) {
    if (stop.signal.aborted) return { code: 130 };
    throw err;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    // The command is done: stop reading our stdin, or a writer that never closes it would keep the CLI alive.
    stdin?.destroy();
  }
}

export const runningCommands: CommandSpec[] = [
  {
    path: ['stop'],
    summary: "stop every process in a box (its root is kept); --all: the project's running boxes",
    args: ['[box]'],
    project: true,
    options: [{ flags: '-a, --all', description: 'stop every running box of the project (-p, else the resolved project)' }],
    async run(ctx, [box], opts) {
      const client = await ctx.client();
      if (opts.all === true) {
        if (box !== undefined) throw new UsageError('pass a box or --all, not both', { hint: 'zomg stop <box>, or zomg stop --all [-p <project>]' });
        const project = ctx.project();
        const running = (await client.listBoxes({ project })).filter((b) => b.status === 'running');
        const results = [];
        for (const b of running) results.push(await client.stopBox(ctx.box(`${b.project}:${b.name}`)));
        return {
          data: results,
          text: results.length === 0 ? `No running boxes in project ${project}` : results.map((r) => `Stopped ${r.box.project}:${r.box.name}`).join('\n'),
        };
      }
      if (box === undefined) throw new UsageError('no box given', { hint: 'zomg stop <box>, or zomg stop --all to stop every running box of the project' });
      const r = await client.stopBox(ctx.box(box));
      const name = `${r.box.project}:${r.box.name}`;
      return { data: r, text: r.changed ? `Stopped ${name}` : `${name} was already stopped` };
    },
  },
  {
    path: ['resume'],
    summary: 'start a stopped box again',
    args: ['<box>'],
    project: true,
    async run(ctx, [box]) {
      const r = await (await ctx.client()).resumeBox(ctx.box(box as string));
      const name = `${r.box.project}:${r.box.name}`;
      return { data: r, text: r.changed ? `Resumed ${name}` : `${name} is already running` };
    },
  },
  {
    path: ['exec'],
    summary: 'run a command in a box (`-` for an ephemeral box): stdin piped through, exit code preserved',
    args: ['<box>', '<command...>'],
    project: true,
    passThrough: true,
    options: [
      { flags: '--env <KEY=VALUE>', description: 'environment variable for this command (repeatable)', repeatable: true },
      { flags: '--wd <dir>', description: 'working directory inside the box' },
      { flags: '--sh', description: 'run the command through /bin/sh -c' },
      { flags: '--user <user>', description: 'run as this user of the box (HOME=/home/<user>)' },
      { flags: '-i, --interactive', description: 'keep stdin attached (it always is; accepted for docker habits: -it)' },
      { flags: '-t, --tty', description: 'run on a terminal in the box (needs a terminal here): prompts, job control, Ctrl-C, window size' },
      { flags: '--bg', description: 'detach; print the pid; output goes to /tmp/boxes/exec/<pid>.log in the box' },
      { flags: '-b, --base <ref>', description: 'base of the ephemeral box (with `-`)' },
    ],
    async run(ctx, [box, ...rest], opts) {
      const command = (rest[0] as unknown as string[] | undefined) ?? [];
      if (command.length === 0) throw new UsageError('no command given', { hint: 'zomg exec <box> CMD [ARGS...] (or -- CMD... when the command starts with an option)' });
      const env = Object.fromEntries(((opts.env as string[] | undefined) ?? []).map(parseEnvAssignment));
      const req: ExecRequest = {
        command,
        ...(Object.keys(env).length > 0 ? { env } : {}),
        ...(opts.wd !== undefined ? { cwd: opts.wd as string } : {}),
        ...(opts.sh === true ? { shell: true } : {}),
        ...(opts.user !== undefined ? { user: opts.user as string } : {}),
      };
      const tty = opts.tty === true;
      if (tty && opts.bg === true) throw new UsageError('-t and --bg cannot be combined: a background command has no terminal');
      // Before an ephemeral box is made for nothing.
      if (tty && !process.stdin.isTTY) throw notATty();
      if (box === '-' && opts.bg === true) throw new UsageError('--bg cannot run in an ephemeral box (-): the box is deleted as soon as the command is started', { hint: 'create a box first: zomg create <name>, then zomg exec <name> --bg CMD' });
      const client = await ctx.client();
      let result;
      if (box === '-') {
        const { randomBytes } = await import('node:crypto');
        const name = `${ctx.project()}:ephemeral-${randomBytes(4).toString('hex')}`;
        const ref = ctx.box(name);
        await client.createBox(ref, opts.base !== undefined ? { base: opts.base as string } : {});
        try {
          result = await execIn(ctx, client, name, req, opts.bg === true, tty);
        } finally {
          await client.deleteBox(ref);
        }
      } else result = await execIn(ctx, client, box as string, req, opts.bg === true, tty);
      if (result.text !== undefined) return { data: result.data, text: result.text };
      // --json: {exit_code, stdout, stderr}, buffered; the exit code is the command's either way.
      if (result.data !== undefined) return { data: result.data, text: '', exitCode: result.code };
      return { data: null, text: '', silent: true, exitCode: result.code };
    },
  },
];
