/** zomg base build | save */
import type { BuilderName } from '../../core/types.js';
import type { CommandSpec } from '../command.js';
import { stderr } from '../stdio.js';

export const buildCommands: CommandSpec[] = [
  {
    path: ['base', 'build'],
    summary: 'build a Dockerfile with docker, podman or nerdctl into a new base version (for linux/amd64)',
    args: ['<name>', '[context]'],
    options: [
      { flags: '-f, --file <Dockerfile>', description: 'the Dockerfile (default: <context>/Dockerfile)' },
      { flags: '--builder <engine>', description: 'docker, podman or nerdctl (default: the first installed and answering, in that order)' },
    ],
    async run(ctx, [name, context], opts) {
      // The build's own output is the point of a build: it streams to stderr even when
      // stderr is not a terminal (stdout keeps the result, or the JSON).
      const onTerminal = stderr.stream().isTTY === true && !ctx.flags.json;
      const version = await (await ctx.client()).buildBase(name as string, {
        ...(context !== undefined ? { context } : {}),
        ...(opts.file !== undefined ? { dockerfile: opts.file as string } : {}),
        ...(opts.builder !== undefined ? { builder: opts.builder as BuilderName } : {}),
        onProgress: (p) => {
          if (p.line !== undefined && !onTerminal) stderr.write(`${p.line}\n`);
          else ctx.progress(p);
        },
      });
      const b = version.provenance.build;
      return { data: version, text: `Built ${version.name} (alias ${version.alias}, builder ${b.builder}, tag ${b.script_sha256?.slice(0, 12)})` };
    },
  },
  {
    path: ['base', 'save'],
    summary: "save a box's current root as a new base version (a read-only snapshot, O(1))",
    args: ['<new-base>', '<box>'],
    project: true,
    async run(ctx, [name, box]) {
      const version = await (await ctx.client()).saveBase(name as string, ctx.box(box as string));
      return { data: version, text: `Saved ${version.name} (alias ${version.alias}, parent ${version.provenance.build.parent_version ?? '-'})` };
    },
  },
];
