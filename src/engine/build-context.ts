/**
 * The build context of `base build`, checked in one place: the Dockerfile is a readable file,
 * the context a directory, with the same codes and messages whether the build runs in-process
 * or on a server (the remote client locates its context here before it packs and uploads it,
 * since only it can see the directory; the server then checks the upload with
 * `uploadedDockerfile`). A Dockerfile from outside the context travels inside the upload
 * under a reserved name (docker's client does the same), which the server takes out again.
 */
import { isAbsolute, join, posix, relative, resolve } from 'node:path';
import { InvalidArgumentError } from '../core/errors.js';
import { fsPromises, randomHex } from '../system/builtins.js';
import { isErrno } from '../system/fs.js';

/** A build context on this machine. */
export interface LocatedContext {
  /** The context directory (absolute). */
  context: string;
  /** The Dockerfile (absolute). */
  dockerfile: string;
  /** The Dockerfile as the user named it (never a host path of the server). */
  shown: string;
  /** The Dockerfile's text. */
  script: string;
}

/** The refusal of a missing Dockerfile, named as the user named it. */
export const noDockerfile = (shown: string): InvalidArgumentError =>
  new InvalidArgumentError(`no Dockerfile: "${shown}" does not exist or is not a file`, {
    code: 'ZOMG_NO_DOCKERFILE',
    hint: 'run in a directory with a Dockerfile, or pass -f <Dockerfile>',
  });

/** The Dockerfile's text; a missing one (or a directory) is `ZOMG_NO_DOCKERFILE`. */
export async function readDockerfile(path: string, shown: string): Promise<string> {
  try {
    return await fsPromises().readFile(path, 'utf8');
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR', 'EISDIR')) throw noDockerfile(shown);
    throw err;
  }
}

async function requireContext(path: string, shown: string): Promise<void> {
  try {
    if ((await fsPromises().stat(path)).isDirectory()) return;
  } catch (err) {
    if (!isErrno(err, 'ENOENT', 'ENOTDIR')) throw err;
  }
  throw new InvalidArgumentError(`the build context "${shown}" is not a directory or does not exist`, {
    code: 'ZOMG_NO_BUILD_CONTEXT',
    hint: 'pass the directory to build from (default: the current directory)',
  });
}

/**
 * Finds and checks a build context on this machine: `contextArg` (default `.`) and its
 * `Dockerfile`, or `dockerfileArg` (relative to the working directory, like docker's `-f`).
 * The Dockerfile is checked first: its absence is the likeliest mistake.
 */
export async function locateBuildContext(contextArg: string, dockerfileArg: string | undefined): Promise<LocatedContext> {
  const shown = dockerfileArg ?? join(contextArg, 'Dockerfile');
  const located = { context: resolve(contextArg), dockerfile: resolve(shown), shown };
  const script = await readDockerfile(located.dockerfile, shown);
  await requireContext(located.context, contextArg);
  return { ...located, script };
}

/**
 * Where the Dockerfile goes in the upload of a located context: its path inside the
 * context, or (when it lies outside) a reserved top-level name the server takes out again.
 */
export function dockerfileInUpload(at: LocatedContext): { name: string; detached: boolean } {
  const rel = relative(at.context, at.dockerfile);
  if (rel !== '' && !rel.startsWith('..') && !isAbsolute(rel)) return { name: rel, detached: false };
  return { name: `.zomg-dockerfile-${randomHex(8)}`, detached: true };
}

/** True for the reserved name of a Dockerfile that came from outside its context. */
export const isDetachedDockerfile = (name: string): boolean => /^\.zomg-dockerfile-[0-9a-f]{8,32}$/.test(name);

/** The Dockerfile named by an upload's `dockerfile` parameter: a relative path inside the context, no `..`. */
export function uploadedDockerfile(value: string): string {
  const normalized = posix.normalize(value);
  if (value === '' || posix.isAbsolute(value) || normalized === '..' || normalized.startsWith('../')) {
    throw new InvalidArgumentError(`the Dockerfile "${value}" must be a relative path inside the uploaded context`, { code: 'ZOMG_INVALID_ARGUMENT' });
  }
  return normalized;
}
