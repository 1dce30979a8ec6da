/** zomg diff status | file */
import type { DiffStatusHead } from '../../core/service.js';
import type { FileDiff } from '../../core/types.js';
import type { CommandSpec } from '../command.js';
import { DiffStatusWriter, burstOfTree } from '../diff-output.js';
import { stdout } from '../stdio.js';

export function renderFileDiff(d: FileDiff): string {
  const side = (s: FileDiff['current']): string => (s ? `${s.type} ${s.mode} ${s.uid}:${s.gid} ${s.size_bytes} bytes${s.target !== undefined ? ` -> ${s.target}` : ''}` : 'absent');
  const lines = [`${d.path}: ${d.status}`];
  if (d.status === 'modified') {
    lines.push(`  snapshot: ${side(d.previous)}`, `  current:  ${side(d.current)}`);
    if (d.binary) lines.push('Binary content differs');
    if (d.diff) lines.push(d.diff.trimEnd());
  }
  return lines.join('\n');
}

export const diffCommands: CommandSpec[] = [
  {
    path: ['diff', 'status'],
    summary: 'what changed in the box root since a snapshot (+ added, ~ modified, - deleted)',
    args: ['<box>'],
    project: true,
    options: [
      { flags: '--against <snapshot>', description: 'the snapshot to compare against (default: the most recent)' },
      { flags: '--to <snapshot>', description: 'compare two snapshots instead of the live root' },
    ],
    async run(ctx, [box], opts) {
      // Printed as it is verified (same text and JSON as a whole result would print).
      const out = new DiffStatusWriter<DiffStatusHead>(ctx.flags.json === true, stdout, burstOfTree(ctx));
      await (await ctx.client()).diffStatusStream(ctx.box(box as string), out, {
        ...(opts.against !== undefined ? { against: opts.against as string } : {}),
        ...(opts.to !== undefined ? { to: opts.to as string } : {}),
      });
      await out.end();
      const head = out.headSeen;
      if (head === undefined) return { data: null, text: '', silent: true };
      const of = `${head.project}:${head.box}`;
      // On stderr, so stdout stays the list of changes.
      return {
        data: null,
        text: '',
        silent: true,
        stderr: head.to === null ? `Compared against snapshot ${head.against} of ${of}` : `Compared snapshot ${head.against} to snapshot ${head.to} of ${of}`,
      };
    },
  },
  {
    path: ['diff', 'file'],
    summary: 'one file against a snapshot: added, deleted, modified (with a unified diff) or unchanged',
    args: ['<box>', '<path>'],
    project: true,
    options: [{ flags: '--against <snapshot>', description: 'the snapshot to compare against (default: the most recent)' }],
    async run(ctx, [box, path], opts) {
      const d = await (await ctx.client()).diffFile(ctx.box(box as string), path as string, opts.against !== undefined ? { against: opts.against as string } : {});
      return { data: d, text: renderFileDiff(d) };
    },
  },
];
