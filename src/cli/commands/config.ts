/** zomg config set | get | list | unset | path */
import { NotFoundError } from '../../core/errors.js';
import type { CommandSpec } from '../command.js';
import { checkKey, configPath, readConfig, writeConfig } from '../config.js';
import { table } from '../render.js';

const path = (): string => configPath(process.env);

export const configCommands: CommandSpec[] = [
  {
    path: ['config', 'set'],
    summary: 'set a key in .zomg/config.yaml (`profile` selects the default profile)',
    args: ['<key>', '<value>'],
    engine: false,
    async run(_ctx, [key, value]) {
      const config = await readConfig(path());
      config[checkKey(key as string)] = value as string;
      await writeConfig(path(), config);
      return { data: { [key as string]: value }, text: `${key} = ${value}` };
    },
  },
  {
    path: ['config', 'get'],
    summary: 'print the value of a key',
    args: ['<key>'],
    engine: false,
    async run(_ctx, [key]) {
      const value = (await readConfig(path()))[checkKey(key as string)];
      if (value === undefined) throw new NotFoundError('ZOMG_CONFIG_KEY_NOT_SET', `config key "${key}" is not set`, { hint: `see \`zomg config list\` (${path()})` });
      return { data: { [key as string]: value }, text: value };
    },
  },
  {
    path: ['config', 'list'],
    summary: 'print every key',
    engine: false,
    async run() {
      const config = await readConfig(path());
      const rows = Object.entries(config);
      return { data: config, text: rows.length === 0 ? 'No configuration' : table(['KEY', 'VALUE'], rows) };
    },
  },
  {
    path: ['config', 'unset'],
    summary: 'remove a key',
    args: ['<key>'],
    engine: false,
    async run(_ctx, [key]) {
      const config = await readConfig(path());
      if (!(checkKey(key as string) in config)) throw new NotFoundError('ZOMG_CONFIG_KEY_NOT_SET', `config key "${key}" is not set`);
      delete config[key as string];
      await writeConfig(path(), config);
      return { data: { unset: key }, text: `Unset ${key}` };
    },
  },
  {
    path: ['config', 'path'],
    summary: 'print where the config lives',
    engine: false,
    async run() {
      return { data: { path: path() }, text: path() };
    },
  },
];
