/** zomg create | list | info | delete */
import { UsageError } from '../../core/errors.js';
import { parseEnvAssignment, parseTag } from '../../core/names.js';
import type { Box } from '../../core/types.js';
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
      { flags: '-d, --data <VOLUME=/path[:ro|:rw]>', description: 'mount a data volume (repeatable)', repeatable: true },
    ],
    async run(ctx, [name], opts) {
      if (opts.base !== undefined && opts.fork !== undefined) throw new UsageError('--base and --fork cannot be used together');
      const ref = ctx.box(name as string);
      const tags = kv(opts.tag, parseTag);
      const environment = kv(opts.env, parseEnvAssignment);
      const client = await ctx.client();
      const box = await client.createBox(ref, {
        ...(opts.base !== undefined ? { base: opts.base as string } : {}),
        ...(opts.fork !== undefined ? { fork: ctx.box(opts.fork as string) } : {}),
        tags,
        environment,
        ...(opts.data !== undefined ? { dataMounts: (opts.data as string[]).map(parseDataMountSpec).map((m) => ({ name: m.volume, path: m.path, read_only: m.read_only })) } : {}),
      });
      return { data: box, text: `Created box ${box.project}:${box.name} from ${box.base}` };
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
        ['DATA', box.data_mounts.map((m) => `${m.name}=${m.path}${m.read_only ? ':ro' : ''}`).join(', ') || '-'],
        ['CREATED', box.created_at],
        ['UPDATED', box.updated_at],
      ];
      return { data: box, text: lines.map(([k, v]) => `${(k as string).padEnd(12)}${v}`).join('\n') };
    },
  },
  {
    path: ['delete'],
    summary: 'delete a box, its root and its snapshots',
    args: ['<box>'],
    project: true,
    async run(ctx, [name]) {
      const ref = ctx.box(name as string);
      await (await ctx.client()).deleteBox(ref);
      return { data: { deleted: `${ref.project}:${ref.name}` }, text: `Deleted box ${ref.project}:${ref.name}` };
    },
  },
];
