/**
 * What a Dockerfile-built base's image config (ENV, WORKDIR) means for the boxes cloned from
 * it: the image's variables are defaults under the box's own (`create -e`) and the injected
 * ones, and WORKDIR is where an exec starts unless it names a directory. USER and CMD are
 * kept and shown as metadata only: an exec runs as root unless `--user` says otherwise, as in
 * every other box, and a box runs no entrypoint.
 */
import { BOX_BIN } from '../core/box-layout.js';
import { RESERVED_ENV } from '../core/names.js';
import type { BaseConfig } from '../core/types.js';
import { resolveInRoot } from '../system/rootpath.js';

const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * The image's ENV as a map, without what a box may not take from it: invalid names, the
 * reserved injected keys and anything `ZOMG_*`. An image PATH gets `/box/bin` appended.
 */
export function imageEnvironment(config: BaseConfig | null | undefined): Record<string, string> {
  const env: Record<string, string> = {};
  for (const entry of config?.env ?? []) {
    const eq = entry.indexOf('=');
    const key = eq < 0 ? entry : entry.slice(0, eq);
    if (!ENV_KEY.test(key) || key.startsWith('ZOMG_') || (RESERVED_ENV as readonly string[]).includes(key)) continue;
    let value = eq < 0 ? '' : entry.slice(eq + 1);
    if (key === 'PATH' && !value.split(':').includes(BOX_BIN)) value = value === '' ? BOX_BIN : `${value}:${BOX_BIN}`;
    env[key] = value;
  }
  return env;
}

/**
 * The directory an exec starts in when it names none: the image's WORKDIR while it is a
 * directory of the box's root (a box whose user removed it falls back to the usual default).
 */
export function imageWorkdir(config: BaseConfig | null | undefined, root: string): string | undefined {
  const workdir = config?.workdir;
  if (!workdir?.startsWith('/')) return undefined;
  return resolveInRoot(root, workdir).stat?.isDirectory() ? workdir : undefined;
}
