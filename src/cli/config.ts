/**
 * The local setup config (SPEC §10): `.zomg/config.yaml` in the current directory, or
 * `$ZOMG_SETUP_DIR/config.yaml`. Flat string keys; `profile` selects the default profile.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { InvalidArgumentError } from '../core/errors.js';

export const configPath = (env: NodeJS.ProcessEnv, cwd = process.cwd()): string =>
  env.ZOMG_SETUP_DIR ? join(resolve(env.ZOMG_SETUP_DIR), 'config.yaml') : join(cwd, '.zomg', 'config.yaml');

const KEY = /^[a-z][a-z0-9_.-]{0,62}$/;

export function checkKey(key: string): string {
  if (!KEY.test(key)) {
    throw new InvalidArgumentError(`invalid config key "${key}": lowercase letters, digits, "_", "." and "-", starting with a letter`, { code: 'ZOMG_INVALID_CONFIG_KEY' });
  }
  return key;
}

/** Reads the config; a missing file is an empty config. Only the key `profile` is read on every command, so the YAML parser loads lazily. */
export async function readConfig(path: string): Promise<Record<string, string>> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return {};
  }
  const { parse } = await import('yaml');
  const data: unknown = parse(text);
  if (data === null || data === undefined) return {};
  if (typeof data !== 'object' || Array.isArray(data)) throw new InvalidArgumentError(`${path} is not a YAML mapping`, { code: 'ZOMG_INVALID_CONFIG' });
  return Object.fromEntries(Object.entries(data as Record<string, unknown>).map(([k, v]) => [k, String(v)]));
}

export async function writeConfig(path: string, config: Record<string, string>): Promise<void> {
  const { stringify } = await import('yaml');
  const { atomicWriteFile } = await import('../system/fs.js');
  mkdirSync(dirname(path), { recursive: true });
  const sorted = Object.fromEntries(Object.entries(config).sort(([a], [b]) => a.localeCompare(b)));
  atomicWriteFile(path, Object.keys(sorted).length === 0 ? '' : stringify(sorted), 0o600);
}
