/** zomg base list | inspect | import | install | delete */
import { UsageError } from '../../core/errors.js';
import type { CommandSpec } from '../command.js';
import { humanBytes, table } from '../render.js';

export const baseCommands: CommandSpec[] = [
  {
    path: ['base', 'list'],
    summary: 'list bases (aliases and the version each points to)',
    async run(ctx) {
      const bases = await (await ctx.client()).listBases();
      return {
        data: bases,
        text: bases.length === 0 ? 'No bases' : table(['NAME', 'VERSION', 'SIZE', 'CREATED'], bases.map((b) => [b.name, b.latest_version, humanBytes(b.size_bytes), b.created_at])),
      };
    },
  },
  {
    path: ['base', 'inspect'],
    summary: 'show every version of a base with its build script',
    args: ['<name>'],
    options: [{ flags: '--tag <sha256>', description: 'only versions whose build-script sha256 starts with this' }],
    async run(ctx, [name], opts) {
      const details = await (await ctx.client()).inspectBase(name as string, opts.tag !== undefined ? { tag: opts.tag as string } : {});
      const rows = details.versions.map((v) => [
        v.name,
        v.provenance.kind,
        v.provenance.build.script_sha256 ?? '-',
        v.provenance.build.builder ?? '-',
        v.provenance.build.parent_version ?? '-',
        humanBytes(v.size_bytes),
        v.created_at,
      ]);
      const parts = [table(['VERSION', 'KIND', 'TAG', 'BUILDER', 'PARENT', 'SIZE', 'CREATED'], rows)];
      for (const v of details.versions) {
        if (v.config) {
          parts.push(`\n--- ${v.name} image config ---\nENV      ${v.config.env.join(' ') || '-'}\nWORKDIR  ${v.config.workdir ?? '-'}\nUSER     ${v.config.user ?? '-'}\nCMD      ${v.config.cmd ? JSON.stringify(v.config.cmd) : '-'}`);
        }
        if (v.provenance.build.script) parts.push(`\n--- ${v.name} build script ---\n${v.provenance.build.script.trimEnd()}`);
      }
      return { data: details, text: parts.join('\n') };
    },
  },
  {
    path: ['base', 'import'],
    summary: 'import a rootfs tarball (.tar, .tar.gz, .tar.zst, .tar.xz) as a new base version',
    args: ['<name>'],
    options: [
      { flags: '--file <rootfs>', description: 'the tarball (required)' },
      { flags: '-p, --parent <base>', description: 'extract on top of a snapshot of this base' },
    ],
    async run(ctx, [name], opts) {
      if (opts.file === undefined) throw new UsageError('--file is required', { hint: 'zomg base import <name> --file <rootfs.tar[.gz|.zst|.xz]> [--parent <base>]' });
      const version = await (await ctx.client()).importBase(name as string, opts.file as string, {
        ...(opts.parent !== undefined ? { parent: opts.parent as string } : {}),
        onProgress: ctx.progress,
      });
      return { data: version, text: `Imported ${version.name} (alias ${version.alias})` };
    },
  },
  {
    path: ['base', 'install'],
    summary: 'install a maintained base (box-base, busybox) from its build script',
    args: ['<name>'],
    options: [{ flags: '--update', description: 'rebuild even when a version with the same script exists' }],
    async run(ctx, [name], opts) {
      const outcome = await (await ctx.client()).installBase(name as string, { update: opts.update === true, onProgress: ctx.progress });
      const v = outcome.version;
      return {
        data: outcome,
        text:
          outcome.status === 'installed'
            ? `Installed ${v.name} (alias ${v.alias}, tag ${v.provenance.build.script_sha256?.slice(0, 12)})`
            : `${name} is up to date: ${v.name} was built from the same script (tag ${v.provenance.build.script_sha256?.slice(0, 12)}); use --update to rebuild`,
      };
    },
  },
  {
    path: ['base', 'delete'],
    summary: 'delete an alias (--alias) or one immutable version (--version)',
    options: [
      { flags: '--alias <name>', description: 'remove the alias; its versions stay reachable by exact name' },
      { flags: '--version <version>', description: 'remove one version (not while an alias points to it)' },
    ],
    async run(ctx, _args, opts) {
      const alias = opts.alias as string | undefined;
      const version = opts.version as string | undefined;
      if ((alias === undefined) === (version === undefined)) throw new UsageError('pass exactly one of --alias <name> or --version <version>', { hint: '`zomg base list` shows aliases, `zomg base inspect <name>` their versions' });
      const client = await ctx.client();
      if (alias !== undefined) {
        await client.deleteBaseAlias(alias);
        return { data: { deleted_alias: alias }, text: `Deleted alias ${alias} (its versions remain reachable by exact name)` };
      }
      await client.deleteBaseVersion(version as string);
      return { data: { deleted_version: version }, text: `Deleted version ${version}` };
    },
  },
];
