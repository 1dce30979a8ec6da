/** zomg create | list | info | delete */
import { UsageError, isZomgError } from '../../core/errors.js';
import { parseEnvAssignment, parseTag } from '../../core/names.js';
import type { BoxRef } from '../../core/refs.js';
import type { Box, BoxConfig } from '../../core/types.js';
import { parseDataMountSpec } from '../../core/volumes.js';
import type { CommandSpec } from '../command.js';
import { table } from '../render.js';

const kv = (values: unknown, parse: (v: string) => [string, string]): Record<string, string> =>
  Object.fromEntries(((values as string[] | undefined) ?? []).map(parse));

const boxTable = (boxes: Box[], withProject: boolean): string =>
  table(
    [...(withProject ? ['PROJECT'] : []), 'NAME', 'STATUS', 'BASE', 'CREATED'],
    boxes.map((b) => [...(withProject ? [b.project] : []), b.name, b.status, b.base, b.created_at]),
  );

function limitsText(config: BoxConfig): string {
  const parts = [
    ...(config.cpus !== null ? [`cpus=${config.cpus}`] : []),
    ...(config.memory_bytes !== null ? [`memory=${formatBytes(config.memory_bytes)}`] : []),
    ...(config.pids !== null ? [`pids=${config.pids}`] : []),
  ];
  return parts.join(', ') || '-';
}

function formatBytes(bytes: number): string {
  for (const [unit, size] of [['g', 1024 ** 3], ['m', 1024 ** 2], ['k', 1024]] as const) if (bytes % size === 0) return `${bytes / size}${unit}`;
  return String(bytes);
}

export const boxCommands: CommandSpec[] = [
  {
    path: ['create'],
    summary: 'create a box from a base (default box-base) or as a fork of another box',
    args: ['<name>'],
    project: true,
    options: [
      { flags: '-b, --base <ref>', description: 'base alias, exact version, or alias:<sha256-prefix>' },
      { flags: '-f, --fork <box>', description: 'clone another box instead of a base' },
      { flags: '-t, --tag <key=value>', description: 'tag (repeatable)', repeatable: true },
      { flags: '-e, --env <KEY=VALUE>', description: 'environment variable (repeatable)', repeatable: true },
      { flags: '-P, --publish <[ip:]host:box[/proto]>', description: 'forward a host port (127.0.0.1 by default) to the box (repeatable)', repeatable: true },
      { flags: '--cpus <n>', description: 'CPU limit, e.g. 0.5 or 2' },
      { flags: '--memory <size>', description: 'memory limit, e.g. 512m or 2g' },
      { flags: '--pids <n>', description: 'limit on the number of processes' },
      { flags: '--privileged', description: 'opt out of the default security profile: host root, host network (docker or systemd inside)' },
      { flags: '-d, --data <VOLUME=/path[:ro|:rw]>', description: 'mount a data volume (repeatable)', repeatable: true },
    ],
    async run(ctx, [name], opts) {
      if (opts.base !== undefined && opts.fork !== undefined) throw new UsageError('--base and --fork cannot be used together', { hint: 'a fork copies the other box, whatever its base: drop one of them' });
      const ref = ctx.box(name as string);
      const tags = kv(opts.tag, parseTag);
      const environment = kv(opts.env, parseEnvAssignment);
      const client = await ctx.client();
      const box = await client.createBox(ref, {
        ...(opts.base !== undefined ? { base: opts.base as string } : {}),
        ...(opts.fork !== undefined ? { fork: ctx.box(opts.fork as string) } : {}),
        tags,
        environment,
        ...(opts.privileged === true ? { privileged: true } : {}),
        ...(opts.cpus !== undefined ? { cpus: opts.cpus as string } : {}),
        ...(opts.memory !== undefined ? { memory: opts.memory as string } : {}),
        ...(opts.pids !== undefined ? { pids: opts.pids as string } : {}),
        ...(opts.publish !== undefined ? { publish: opts.publish as string[] } : {}),
        ...(opts.data !== undefined ? { dataMounts: (opts.data as string[]).map(parseDataMountSpec).map((m) => ({ name: m.volume, path: m.path, read_only: m.read_only })) } : {}),
      });
      const made = `Created box ${box.project}:${box.name}`;
      if (opts.fork !== undefined) {
        const from = ctx.box(opts.fork as string);
        return { data: box, text: `${made} as a fork of ${from.project}:${from.name}` };
      }
      return { data: box, text: `${made} from ${box.base}` };
    },
  },
  {
    path: ['list'],
    summary: 'list boxes',
    project: true,
    options: [
      { flags: '-a, --all', description: 'boxes of every project' },
      { flags: '-q, --quiet', description: 'names only' },
      { flags: '-t, --tag <key=value>', description: 'filter by tag (repeatable, ANDed)', repeatable: true },
    ],
    async run(ctx, _args, opts) {
      const tags = kv(opts.tag, parseTag);
      const all = opts.all === true;
      const boxes = await (await ctx.client()).listBoxes({ ...(all ? {} : { project: ctx.project() }), tags });
      if (opts.quiet === true) return { data: boxes.map((b) => (all ? `${b.project}:${b.name}` : b.name)), text: boxes.map((b) => (all ? `${b.project}:${b.name}` : b.name)).join('\n') };
      return { data: boxes, text: boxes.length === 0 ? 'No boxes' : boxTable(boxes, all) };
    },
  },
  {
    path: ['info'],
    summary: 'show one box',
    args: ['<box>'],
    project: true,
    async run(ctx, [name]) {
      const box = await (await ctx.client()).getBox(ctx.box(name as string));
      const lines = [
        ['NAME', box.name],
        ['PROJECT', box.project],
        ['ID', box.id],
        ['STATUS', box.status],
        ['BASE', box.base],
        ['TAGS', Object.entries(box.tags).map(([k, v]) => `${k}=${v}`).join(', ') || '-'],
        ['ENVIRONMENT', Object.keys(box.environment).join(', ') || '-'],
        ['PROFILE', box.config.privileged ? 'privileged' : 'default'],
        ['LIMITS', limitsText(box.config)],
        ['PUBLISH', box.config.publish.map((p) => `${p.host_ip}:${p.host_port}->${p.box_port}/${p.protocol}`).join(', ') || '-'],
        ['DATA', box.data_mounts.map((m) => `${m.name}=${m.path}${m.read_only ? ':ro' : ''}`).join(', ') || '-'],
        ['CREATED', box.created_at],
        ['UPDATED', box.updated_at],
      ];
      return { data: box, text: lines.map(([k, v]) => `${(k as string).padEnd(12)}${v}`).join('\n') };
    },
  },
  {
    path: ['delete'],
    summary: 'delete boxes, their roots and their snapshots (each one reported; exit 1 if any failed)',
    args: ['<box...>'],
    project: true,
    async run(ctx, [names]) {
      const refs = (names as unknown as string[]).map((n) => ctx.box(n));
      const client = await ctx.client();
      if (refs.length === 1) {
        const ref = refs[0] as BoxRef;
        await client.deleteBox(ref);
        return { data: { deleted: `${ref.project}:${ref.name}` }, text: `Deleted box ${ref.project}:${ref.name}` };
      }
      // One after the other: each box is reported, a failure does not stop the others.
      const results: Array<{ box: string; deleted: boolean; error?: { code: string; message: string; hint?: string } }> = [];
      for (const ref of refs) {
        const box = `${ref.project}:${ref.name}`;
        try {
          await client.deleteBox(ref);
          results.push({ box, deleted: true });
        } catch (err) {
          if (!isZomgError(err)) throw err;
          results.push({ box, deleted: false, error: { code: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}) } });
        }
      }
      const failed = results.filter((r) => !r.deleted);
      return {
        data: results,
        text: results.filter((r) => r.deleted).map((r) => `Deleted box ${r.box}`).join('\n'),
        ...(failed.length > 0
          ? {
              exitCode: 1,
              stderr: failed.map((r) => `error: ${r.error?.message}${r.error?.hint ? `\nhint: ${r.error.hint}` : ''}`).join('\n'),
              ...(failed.length === results.length ? { silent: true } : {}),
            }
          : {}),
      };
    },
  },
];
