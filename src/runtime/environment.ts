/**
 * The environment inside a box: the injected variables, `/etc/boxes-env` and the hooks that
 * make shells source it, and the environment of one exec.
 *
 * The variables reach processes two ways, as the docs describe: every exec gets them in
 * its environment directly (so `sh -c`, Python subprocesses, anything sees them without a
 * shell), and `/etc/boxes-env` holds them for sessions started some other way (a console,
 * ssh, a cron job) through a `source` line in `/etc/bash.bashrc` and
 * `/etc/profile.d/boxes-env.sh` when the rootfs has them.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { InvalidArgumentError } from '../core/errors.js';
import type { RESERVED_ENV } from '../core/names.js';
import { atomicWriteFile } from '../system/fs.js';
import { ensureDirInRoot, resolveInRoot } from './rootfs.js';

/** PATH for processes in a box unless the box's environment sets its own. */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

const BOXES_ENV_PATH = '/etc/boxes-env';
const HOOK_MARKER = '# zomg: box environment';
const HOOK = `if [ -r ${BOXES_ENV_PATH} ]; then . ${BOXES_ENV_PATH}; fi ${HOOK_MARKER}\n`;

const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * The environment a box is started with: the user's variables, then the injected ones,
 * which always win (they are reserved: `-e` rejects them before they get here).
 */
export function boxEnvironment(fields: { project: string; box: string; apiUrl: string; user?: Record<string, string> }): Record<string, string> {
  const injected: Record<(typeof RESERVED_ENV)[number], string> = {
    ZOMG_PROJECT: fields.project,
    BOX_NAME: fields.box,
    ZOMG_API_URL: fields.apiUrl,
    TERM: 'xterm-256color',
  };
  return { ...(fields.user ?? {}), ...injected };
}

/** Throws unless every key is a valid variable name (they end up in a shell file). */
export function checkEnvKeys(env: Record<string, string>): void {
  for (const key of Object.keys(env)) {
    if (!ENV_KEY.test(key)) {
      throw new InvalidArgumentError(`invalid environment variable name "${key}"`, { code: 'ZOMG_INVALID_ENV' });
    }
  }
}

/** POSIX single-quoting: safe for any byte string in sh, bash and busybox ash. */
function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

/** The text of /etc/boxes-env: one `export K='v'` line per variable, sorted for stable diffs. */
export function renderBoxesEnv(env: Record<string, string>): string {
  checkEnvKeys(env);
  const lines = Object.keys(env)
    .sort()
    .map((key) => `export ${key}=${shellQuote(env[key] ?? '')}`);
  return `# Written by zomg when the box starts; edits are overwritten.\n${lines.join('\n')}\n`;
}

function readIfFile(hostPath: string): string | undefined {
  try {
    return readFileSync(hostPath, 'utf8');
  } catch {
    return undefined;
  }
}

/**
 * Writes /etc/boxes-env into the (stopped) box's root and hooks it into bash and login
 * shells. Idempotent and quiet: files are rewritten only when their content changes, so a
 * resume does not touch the root (and the box's diff) needlessly.
 */
export function installBoxEnvironment(root: string, env: Record<string, string>): void {
  const etc = ensureDirInRoot(root, '/etc', BOXES_ENV_PATH);
  const text = renderBoxesEnv(env);
  // followFinal false: a symlink planted at /etc/boxes-env is replaced, never written through.
  const target = resolveInRoot(root, BOXES_ENV_PATH, { followFinal: false });
  if (!(target.stat?.isFile() && readIfFile(target.hostPath) === text)) {
    atomicWriteFile(`${etc.hostPath}/boxes-env`, text, 0o644);
  }

  // Debian's bash reads /etc/bash.bashrc in every interactive shell (and /etc/profile
  // sources it for login shells); only append to a file the rootfs already has.
  const bashrc = resolveInRoot(root, '/etc/bash.bashrc');
  if (bashrc.stat?.isFile()) {
    const current = readIfFile(bashrc.hostPath) ?? '';
    if (!current.includes(HOOK_MARKER)) {
      writeFileSync(bashrc.hostPath, `${current.length > 0 && !current.endsWith('\n') ? '\n' : ''}${HOOK}`, { flag: 'a' });
    }
  }

  // Login shells of any POSIX sh (dash, busybox ash) read /etc/profile.d/*.sh.
  const profileD = resolveInRoot(root, '/etc/profile.d');
  if (profileD.stat?.isDirectory()) {
    const script = resolveInRoot(root, '/etc/profile.d/boxes-env.sh', { followFinal: false });
    if (!(script.stat?.isFile() && readIfFile(script.hostPath) === HOOK)) {
      atomicWriteFile(`${profileD.hostPath}/boxes-env.sh`, HOOK, 0o644);
    }
  }
}

export interface ExecIdentity {
  home: string;
  user: string;
  shell: string;
}

/**
 * The environment of one exec: a sane PATH, the box's variables, the identity of the user
 * it runs as, then the exec's own `--env` (which may override anything; the caller
 * validates what users may set).
 */
export function execEnvironment(
  boxEnv: Record<string, string>,
  identity: ExecIdentity,
  execEnv: Record<string, string> = {},
  defaultPath = DEFAULT_PATH,
): Record<string, string> {
  checkEnvKeys(execEnv);
  return {
    PATH: defaultPath,
    ...boxEnv,
    HOME: identity.home,
    USER: identity.user,
    LOGNAME: identity.user,
    SHELL: identity.shell,
    ...execEnv,
  };
}
