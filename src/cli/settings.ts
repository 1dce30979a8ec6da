/**
 * Where a command goes (SPEC §10): `--url`, then the selected profile (`--profile` or
 * `ZOMG_PROFILE`, with `ZOMG_PROFILE_<NAME>_URL`/`_TOKEN`), then `ZOMG_URL`, then
 * `ZOMG_API_URL`; none → the local engine on the state directory. Also project resolution.
 */
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { InvalidArgumentError, UsageError } from '../core/errors.js';
import { type ProjectName, parseProjectName } from '../core/names.js';
import { isLoopbackHost } from '../core/net.js';
import { projectFromDirName } from '../core/refs.js';

export interface GlobalFlags {
  url?: string;
  profile?: string;
  token?: string;
  stateDir?: string;
  project?: string;
  json?: boolean;
  /** The `profile` key of the local setup config, used when no profile is selected otherwise. */
  configProfile?: string;
}

export type Target = { mode: 'local'; stateDir: string } | { mode: 'remote'; url: string; token: string | undefined };

const DEFAULT_STATE_DIR = '/var/lib/zomg';

export const stateDirOf = (flags: GlobalFlags, env: NodeJS.ProcessEnv): string => resolve(flags.stateDir ?? env.ZOMG_HOME ?? DEFAULT_STATE_DIR);

const profileVar = (profile: string, suffix: string): string => `ZOMG_PROFILE_${profile.toUpperCase().replace(/[^A-Z0-9]/g, '_')}_${suffix}`;

function localToken(stateDir: string): string | undefined {
  try {
    return readFileSync(join(stateDir, 'token'), 'utf8').trim();
  } catch {
    return undefined;
  }
}

export function resolveTarget(flags: GlobalFlags, env: NodeJS.ProcessEnv): Target {
  const stateDir = stateDirOf(flags, env);
  const explicitToken = flags.token ?? env.ZOMG_TOKEN;
  const remote = (url: string, token: string | undefined, fallback: boolean): Target => {
    let host: string;
    try {
      host = new URL(url).hostname.replace(/^\[|\]$/g, '');
    } catch {
      throw new UsageError(`invalid API URL "${url}"`, { hint: 'pass a URL like http://127.0.0.1:7070 (--url, ZOMG_URL or a profile)' });
    }
    // The local server's token file is offered only to a server on this machine, never elsewhere.
    const local = fallback && isLoopbackHost(host) ? localToken(stateDir) : undefined;
    return { mode: 'remote', url: url.replace(/\/+$/, ''), token: token ?? explicitToken ?? local };
  };
  if (flags.url) return remote(flags.url, undefined, true);
  const profile = flags.profile ?? env.ZOMG_PROFILE ?? flags.configProfile;
  if (profile) {
    const urlVar = profileVar(profile, 'URL');
    const url = env[urlVar];
    if (!url) throw new InvalidArgumentError(`profile "${profile}" is selected but ${urlVar} is not set`, {
      code: 'ZOMG_PROFILE_NO_URL',
      hint: `set ${urlVar}, or select another profile (--profile, ZOMG_PROFILE, \`zomg config set profile <name>\`; \`zomg config unset profile\` to use the local engine)`,
    });
    return remote(url, env[profileVar(profile, 'TOKEN')], false);
  }
  if (env.ZOMG_URL) return remote(env.ZOMG_URL, undefined, true);
  if (env.ZOMG_API_URL) return remote(env.ZOMG_API_URL, undefined, true);
  return { mode: 'local', stateDir };
}

function gitRoot(from: string): string | undefined {
  for (let dir = resolve(from); ; dir = dirname(dir)) {
    if (existsSync(join(dir, '.git'))) return dir;
    if (dirname(dir) === dir) return undefined;
  }
}

/** `--project`, then `ZOMG_PROJECT`, then the git repository root's name if valid, then `default`. */
export function resolveProject(flags: GlobalFlags, env: NodeJS.ProcessEnv, cwd = process.cwd()): ProjectName {
  if (flags.project !== undefined) return parseProjectName(flags.project);
  if (env.ZOMG_PROJECT) return parseProjectName(env.ZOMG_PROJECT);
  const root = gitRoot(cwd);
  return projectFromDirName(root === undefined ? undefined : basename(root)) ?? ('default' as ProjectName);
}
