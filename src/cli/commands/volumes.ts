/** zomg data … — data volumes: create, list, info, delete, attach, detach, snapshots, diffs, backups. */
import { UsageError } from '../../core/errors.js';
import type { VolumeDiffStatusHead } from '../../core/service.js';
import type { Volume, VolumeBackup } from '../../core/types.js';
import { type VolumeRef, parseDataMountSpec, parseVolumeRef } from '../../core/volumes.js';
import type { CommandSpec, RunContext } from '../command.js';
import { DiffStatusWriter, burstOfTree } from '../diff-output.js';
import { humanBytes, table } from '../render.js';
import { stdout } from '../stdio.js';
import { renderFileDiff } from './diffs.js';

const vref = (ctx: RunContext, value: string): VolumeRef => parseVolumeRef(value, ctx.project());
const label = (v: { project: string; name: string }): string => `${v.project}:${v.name}`;

const attachedText = (v: Volume): string => v.attached.map((a) => `${a.project === v.project ? a.box : `${a.project}:${a.box}`}:${a.path}${a.read_only ? ':ro' : ''}`).join(', ') || '-';

function volumeTable(volumes: Volume[], withProject: boolean): string {
  return table(
    [...(withProject ? ['PROJECT'] : []), 'NAME', 'OWNERSHIP', 'SIZE', 'ATTACHED', 'CREATED'],
    volumes.map((v) => [...(withProject ? [v.project] : []), v.name, v.ownership, humanBytes(v.size_bytes), attachedText(v), v.created_at]),
  );
}

function backupTable(backups: VolumeBackup[], withProject: boolean): string {
  return table(
    [...(withProject ? ['PROJECT'] : []), 'VOLUME', 'NAME', 'KIND', 'PARENT', 'STREAM', 'CREATED'],
    backups.map((b) => [...(withProject ? [b.project] : []), b.volume, b.name, b.kind, b.parent ?? '-', humanBytes(b.stream_bytes), b.created_at]),
  );
}

/** `volume`, `volume/backup`, `project:volume` or `project:volume/backup`. */
function parseBackupRef(ctx: RunContext, value: string): { source: VolumeRef; backup?: string } {
  const slash = value.indexOf('/');
  const source = vref(ctx, slash < 0 ? value : value.slice(0, slash));
  return slash < 0 ? { source } : { source, backup: value.slice(slash + 1) };
}

export const volumeCommands: CommandSpec[] = [
  {
    path: ['data', 'create'],
    summary: 'create a data volume: empty, or an O(1) clone of another volume (or of one of its snapshots)',
    args: ['<name>'],
    project: true,
    options: [
      { flags: '--from <volume>', description: 'clone this volume ([project:]name)' },
      { flags: '--from-snapshot <snapshot>', description: 'with --from: clone this snapshot of it' },
    ],
    async run(ctx, [name], opts) {
      if (opts.fromSnapshot !== undefined && opts.from === undefined) throw new UsageError('--from-snapshot needs --from (the volume the snapshot belongs to)');
      const ref = vref(ctx, name as string);
      const v = await (await ctx.client()).createVolume(ref, {
        ...(opts.from !== undefined ? { from: vref(ctx, opts.from as string) } : {}),
        ...(opts.fromSnapshot !== undefined ? { fromSnapshot: opts.fromSnapshot as string } : {}),
      });
      return { data: v, text: `Created volume ${label(v)}${v.source ? ` from ${v.source}` : ''}` };
    },
  },
  {
    path: ['data', 'list'],
    summary: 'list data volumes (NAME, OWNERSHIP, SIZE, ATTACHED, CREATED)',
    project: true,
    options: [{ flags: '-a, --all', description: 'volumes of every project' }],
    async run(ctx, _args, opts) {
      const all = opts.all === true;
      const volumes = await (await ctx.client()).listVolumes(all ? {} : { project: ctx.project() });
      return { data: volumes, text: volumes.length === 0 ? 'No volumes' : volumeTable(volumes, all) };
    },
  },
  {
    path: ['data', 'info'],
    summary: 'show one data volume',
    args: ['<name>'],
    project: true,
    async run(ctx, [name]) {
      const v = await (await ctx.client()).getVolume(vref(ctx, name as string));
      const lines = [
        ['NAME', v.name],
        ['PROJECT', v.project],
        ['ID', v.id],
        ['OWNERSHIP', v.ownership + (v.owner ? ` (owner ${v.owner}, deleted with it)` : '')],
        ['SIZE', humanBytes(v.size_bytes)],
        ['ATTACHED', attachedText(v)],
        ['SOURCE', v.source ?? '-'],
        ['CREATED', v.created_at],
      ];
      return { data: v, text: lines.map(([k, val]) => `${(k as string).padEnd(12)}${val}`).join('\n') };
    },
  },
  {
    path: ['data', 'delete'],
    summary: 'delete a data volume with its snapshots (refused while a box mounts it)',
    args: ['<name>'],
    project: true,
    async run(ctx, [name]) {
      const ref = vref(ctx, name as string);
      await (await ctx.client()).deleteVolume(ref);
      return { data: { deleted: label(ref) }, text: `Deleted volume ${label(ref)}` };
    },
  },
  {
    path: ['data', 'attach'],
    summary: 'mount a volume in a stopped box: NAME=/path[:ro|:rw] (from its next start)',
    args: ['<box>', '<mount>'],
    project: true,
    async run(ctx, [box, spec]) {
      const m = parseDataMountSpec(spec as string);
      const b = await (await ctx.client()).attachVolume(ctx.box(box as string), { name: m.volume, path: m.path, read_only: m.read_only });
      return { data: b, text: `Attached ${m.volume} to ${b.project}:${b.name} at ${m.path}${m.read_only ? ' (read-only)' : ''}` };
    },
  },
  {
    path: ['data', 'detach'],
    summary: 'unmount a volume from a stopped box',
    args: ['<box>', '<name>'],
    project: true,
    async run(ctx, [box, name]) {
      const b = await (await ctx.client()).detachVolume(ctx.box(box as string), name as string);
      return { data: b, text: `Detached ${name} from ${b.project}:${b.name}` };
    },
  },
  {
    path: ['data', 'snapshot', 'create'],
    summary: 'take a read-only snapshot of a volume (named v0, v1, … unless named)',
    args: ['<volume>', '[name]'],
    project: true,
    options: [
      { flags: '--name <name>', description: 'snapshot name (overrides the positional name)' },
      { flags: '-m, --message <description>', description: 'description' },
    ],
    async run(ctx, [volume, positional], opts) {
      const name = (opts.name as string | undefined) ?? positional;
      const s = await (await ctx.client()).createVolumeSnapshot(vref(ctx, volume as string), {
        ...(name !== undefined ? { name } : {}),
        ...(opts.message !== undefined ? { description: opts.message as string } : {}),
      });
      return { data: s, text: `Created snapshot ${s.name} of volume ${s.project}:${s.volume}` };
    },
  },
  {
    path: ['data', 'snapshot', 'list'],
    summary: 'list the snapshots of a volume, oldest first',
    args: ['<volume>'],
    project: true,
    async run(ctx, [volume]) {
      const list = await (await ctx.client()).listVolumeSnapshots(vref(ctx, volume as string));
      return {
        data: list,
        text: list.length === 0 ? 'No snapshots' : table(['NAME', 'SIZE', 'CREATED', 'DESCRIPTION'], list.map((s) => [s.name, humanBytes(s.size_bytes), s.created_at, s.description])),
      };
    },
  },
  {
    path: ['data', 'snapshot', 'restore'],
    summary: 'replace a volume with one of its snapshots (boxes mounting it are stopped and resumed)',
    args: ['<volume>', '<snapshot>'],
    project: true,
    async run(ctx, [volume, name]) {
      const s = await (await ctx.client()).restoreVolumeSnapshot(vref(ctx, volume as string), name as string);
      return { data: s, text: `Restored volume ${s.project}:${s.volume} to snapshot ${s.name}` };
    },
  },
  {
    path: ['data', 'snapshot', 'delete'],
    summary: 'delete a snapshot of a volume',
    args: ['<volume>', '<snapshot>'],
    project: true,
    async run(ctx, [volume, name]) {
      const ref = vref(ctx, volume as string);
      await (await ctx.client()).deleteVolumeSnapshot(ref, name as string);
      return { data: { deleted: name }, text: `Deleted snapshot ${name} of volume ${label(ref)}` };
    },
  },
  {
    path: ['data', 'diff'],
    summary: 'what changed in a volume since a snapshot (+ added, ~ modified, - deleted); `data diff file` for one file',
    args: ['<volume>'],
    project: true,
    options: [
      { flags: '--against <snapshot>', description: 'the snapshot to compare against (default: the most recent)' },
      { flags: '--to <snapshot>', description: 'compare two snapshots instead of the live volume' },
    ],
    async run(ctx, [volume], opts) {
      // Printed as it is verified (same text and JSON as a whole result would print).
      const out = new DiffStatusWriter<VolumeDiffStatusHead>(ctx.flags.json === true, stdout, burstOfTree(ctx));
      await (await ctx.client()).volumeDiffStatusStream(vref(ctx, volume as string), out, {
        ...(opts.against !== undefined ? { against: opts.against as string } : {}),
        ...(opts.to !== undefined ? { to: opts.to as string } : {}),
      });
      await out.end();
      return { data: null, text: '', silent: true };
    },
  },
  {
    path: ['data', 'diff', 'file'],
    summary: 'one file of a volume against a snapshot: added, deleted, modified (with a unified diff) or unchanged',
    args: ['<volume>', '<path>'],
    project: true,
    options: [{ flags: '--against <snapshot>', description: 'the snapshot to compare against (default: the most recent)' }],
    async run(ctx, [volume, path], opts) {
      const d = await (await ctx.client()).volumeDiffFile(vref(ctx, volume as string), path as string, opts.against !== undefined ? { against: opts.against as string } : {});
      return { data: d, text: renderFileDiff(d) };
    },
  },
  {
    path: ['data', 'backup', 'create'],
    summary: 'back a volume up to a target (file:///dir): full the first time, incremental afterwards',
    args: ['<volume>'],
    project: true,
    options: [
      { flags: '--to <url>', description: 'backup target, e.g. file:///srv/backups (required)' },
      { flags: '--name <name>', description: 'backup name (default: the next vN at the target)' },
    ],
    async run(ctx, [volume], opts) {
      if (opts.to === undefined) throw new UsageError('--to <url> is required, e.g. --to file:///srv/backups');
      const b = await (await ctx.client()).createBackup(vref(ctx, volume as string), { to: opts.to as string, ...(opts.name !== undefined ? { name: opts.name as string } : {}) });
      return { data: b, text: `Backed up ${b.project}:${b.volume} as ${b.name} (${b.kind}${b.parent ? ` after ${b.parent}` : ''}, ${humanBytes(b.stream_bytes)})` };
    },
  },
  {
    path: ['data', 'backup', 'list'],
    summary: 'list the backups at a target (of the project, or of one volume)',
    args: ['[volume]'],
    project: true,
    options: [
      { flags: '--from <url>', description: 'backup target, e.g. file:///srv/backups (required)' },
      { flags: '-a, --all', description: 'backups of every project at the target' },
    ],
    async run(ctx, [volume], opts) {
      if (opts.from === undefined) throw new UsageError('--from <url> is required, e.g. --from file:///srv/backups');
      const all = opts.all === true && volume === undefined;
      const ref = volume !== undefined ? vref(ctx, volume) : undefined;
      const backups = await (await ctx.client()).listBackups(opts.from as string, {
        ...(all ? {} : { project: ref?.project ?? ctx.project() }),
        ...(ref ? { volume: ref.name } : {}),
      });
      return { data: backups, text: backups.length === 0 ? 'No backups' : backupTable(backups, all) };
    },
  },
  {
    path: ['data', 'backup', 'restore'],
    summary: 'restore a backup into a new volume: <volume>[/<backup>] (default the newest), chain verified by sha256',
    args: ['<backup>'],
    project: true,
    options: [
      { flags: '--from <url>', description: 'backup target, e.g. file:///srv/backups (required)' },
      { flags: '--to <volume>', description: 'the new volume to create (required)' },
    ],
    async run(ctx, [backup], opts) {
      if (opts.from === undefined) throw new UsageError('--from <url> is required, e.g. --from file:///srv/backups');
      if (opts.to === undefined) throw new UsageError('--to <volume> is required: the new volume to restore into');
      const { source, backup: name } = parseBackupRef(ctx, backup as string);
      const v = await (await ctx.client()).restoreBackup({ from: opts.from as string, source, ...(name !== undefined ? { backup: name } : {}), to: vref(ctx, opts.to as string) });
      return { data: v, text: `Restored ${v.source ?? 'backup'} into volume ${label(v)}` };
    },
  },
];
