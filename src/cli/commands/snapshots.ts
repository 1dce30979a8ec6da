/** zomg snapshot create | list | restore | delete */
import type { CommandSpec } from '../command.js';
import { humanBytes, table } from '../render.js';

export const snapshotCommands: CommandSpec[] = [
  {
    path: ['snapshot', 'create'],
    summary: 'take a read-only snapshot of a box root (named v0, v1, … unless named)',
    args: ['<box>', '[name]'],
    project: true,
    options: [
      { flags: '--name <name>', description: 'snapshot name (overrides the positional name)' },
      { flags: '-m, --message <description>', description: 'description' },
    ],
    async run(ctx, [box, positional], opts) {
      const name = (opts.name as string | undefined) ?? positional;
      const cp = await (await ctx.client()).createSnapshot(ctx.box(box as string), {
        ...(name !== undefined ? { name } : {}),
        ...(opts.message !== undefined ? { description: opts.message as string } : {}),
      });
      return { data: cp, text: `Created snapshot ${cp.name} of ${cp.project}:${cp.box}` };
    },
  },
  {
    path: ['snapshot', 'list'],
    summary: 'list the snapshots of a box, oldest first',
    args: ['<box>'],
    project: true,
    async run(ctx, [box]) {
      const cps = await (await ctx.client()).listSnapshots(ctx.box(box as string));
      return {
        data: cps,
        text: cps.length === 0 ? 'No snapshots' : table(['NAME', 'SIZE', 'CREATED', 'DESCRIPTION'], cps.map((c) => [c.name, humanBytes(c.size_bytes), c.created_at, c.description])),
      };
    },
  },
  {
    path: ['snapshot', 'restore'],
    summary: 'replace the box root with a snapshot (every snapshot survives)',
    args: ['<box>', '<snapshot>'],
    project: true,
    async run(ctx, [box, name]) {
      const cp = await (await ctx.client()).restoreSnapshot(ctx.box(box as string), name as string);
      return { data: cp, text: `Restored ${cp.project}:${cp.box} to snapshot ${cp.name}` };
    },
  },
  {
    path: ['snapshot', 'delete'],
    summary: 'delete a snapshot',
    args: ['<box>', '<snapshot>'],
    project: true,
    async run(ctx, [box, name]) {
      const ref = ctx.box(box as string);
      await (await ctx.client()).deleteSnapshot(ref, name as string);
      return { data: { deleted: name }, text: `Deleted snapshot ${name} of ${ref.project}:${ref.name}` };
    },
  },
];
