/**
 * Paths inside a root directory (a box root, a rootfs, a snapshot), resolved the way the
 * kernel would after chroot(root): an absolute symlink `/etc/x -> /data/x` means
 * `<root>/data/x`, never the host's `/data/x`. Plain `path.join(root, p)` + `fs.*` would
 * follow such links out onto the host, so every host access to a path inside a root goes
 * through `resolveInRoot` and then uses only the symlink-free path it returns.
 */
import { lstatSync, readlinkSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { UnprocessableError } from '../core/errors.js';
import { isErrno } from './fs.js';

const MAX_SYMLINKS = 40;

export interface ResolvedPath {
  /** The path inside the root with every symlink resolved: absolute, normalized. */
  boxPath: string;
  /** `root` + `boxPath`: no symlink in any component (but maybe the last when `followFinal` is false). */
  hostPath: string;
  /** lstat of the final component, undefined when it does not exist. */
  stat: Stats | undefined;
}

export interface ResolveOptions {
  /** Follow a symlink in the last component too (default true). */
  followFinal?: boolean;
  /** `..` above the root: the error to throw. Without it, `..` stops at the root, as in a chroot. */
  onEscape?: () => Error;
  /** Called with each resolved prefix (`/a`, `/a/b`, …), e.g. to refuse some subtrees. */
  onComponent?: (boxPath: string) => void;
}

/** The names of a path, without empty and `.` ones. */
export function components(path: string): string[] {
  return path.split('/').filter((part) => part !== '' && part !== '.');
}

/** lstat, or undefined when nothing is there. */
export function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR', 'ENAMETOOLONG')) return undefined;
    throw err;
  }
}

/**
 * Resolves `boxPath` inside `root`. Missing components are allowed: the result then has
 * `stat` undefined and the rest of the path is taken literally. A symlink loop is
 * UnprocessableError ZOMG_SYMLINK_LOOP.
 */
export function resolveInRoot(root: string, boxPath: string, options: ResolveOptions = {}): ResolvedPath {
  const followFinal = options.followFinal ?? true;
  const pending = components(boxPath);
  const done: string[] = [];
  const up = (): void => {
    if (done.length === 0 && options.onEscape) throw options.onEscape();
    done.pop();
  };
  const enter = (part: string): void => {
    done.push(part);
    options.onComponent?.(`/${done.join('/')}`);
  };
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift() as string;
    if (part === '..') {
      up();
      continue;
    }
    const hostPath = join(root, ...done, part);
    const stat = lstatOrUndefined(hostPath);
    if (stat === undefined) {
      // Nothing below a missing entry exists either: the rest is literal.
      enter(part);
      for (const rest of pending) {
        if (rest === '..') up();
        else enter(rest);
      }
      return { boxPath: `/${done.join('/')}`, hostPath: join(root, ...done), stat: undefined };
    }
    if (stat.isSymbolicLink() && (followFinal || pending.length > 0)) {
      if (++links > MAX_SYMLINKS) {
        throw new UnprocessableError('ZOMG_SYMLINK_LOOP', `too many levels of symbolic links resolving ${boxPath}`);
      }
      const target = readlinkSync(hostPath);
      if (target.startsWith('/')) done.length = 0;
      pending.unshift(...components(target));
      continue;
    }
    enter(part);
  }
  const hostPath = join(root, ...done);
  return { boxPath: `/${done.join('/')}`, hostPath, stat: lstatOrUndefined(hostPath) };
}
