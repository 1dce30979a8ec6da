/**
 * Touching paths inside a box's root from the host. The root belongs to the box, so its
 * symlinks are read the way the box reads them (`resolveInRoot`, system/rootpath.ts): every
 * host write into a root resolves the path first and then touches only the symlink-free
 * path it returns.
 *
 * Races: when the box is stopped (start-up) nothing inside can swap a path between the
 * check and the use. When it runs (exec), the host only creates a missing /home/<user>
 * (mkdir never follows a symlink, and the chown goes through an O_NOFOLLOW descriptor) and
 * reads /etc/passwd, so a swap in the window can redirect neither onto the host.
 */
import { chmodSync, closeSync, constants, fchmodSync, fchownSync, lstatSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidArgumentError, UnprocessableError } from '../core/errors.js';
import { isErrno } from '../system/fs.js';
import { type ResolvedPath, components, lstatOrUndefined, resolveInRoot } from '../system/rootpath.js';

export { type ResolvedPath, resolveInRoot } from '../system/rootpath.js';

function notADirectory(boxPath: string, what: string): UnprocessableError {
  return new UnprocessableError('ZOMG_BAD_MOUNTPOINT', `cannot mount ${what} at ${boxPath} in the box: it exists and is not a directory`, {
    hint: `remove or rename ${boxPath} inside the box`,
  });
}

/**
 * Makes sure `boxPath` is a directory inside `root`, creating missing components with mode
 * 0755 (explicitly, whatever the umask). Returns the resolved path (for use as a mount
 * destination, so bwrap never follows a box symlink itself).
 */
export function ensureDirInRoot(root: string, boxPath: string, what = 'a volume'): ResolvedPath {
  const resolved = resolveInRoot(root, boxPath);
  if (resolved.stat !== undefined) {
    if (!resolved.stat.isDirectory()) throw notADirectory(resolved.boxPath, what);
    return resolved;
  }
  // Create the missing tail one component at a time; each parent is already symlink-free.
  const parts = components(resolved.boxPath);
  for (let i = 1; i <= parts.length; i++) {
    const hostPath = join(root, ...parts.slice(0, i));
    const stat = lstatOrUndefined(hostPath);
    if (stat === undefined) {
      mkdirSync(hostPath, { mode: 0o755 });
      chmodSync(hostPath, 0o755);
    } else if (!stat.isDirectory()) {
      throw notADirectory(`/${parts.slice(0, i).join('/')}`, what);
    }
  }
  return { ...resolved, stat: lstatSync(resolved.hostPath) };
}

/** Makes sure `boxPath` is a regular file inside `root` (an empty one, mode 0644, when missing). */
export function ensureFileInRoot(root: string, boxPath: string, what: string): ResolvedPath {
  const resolved = resolveInRoot(root, boxPath);
  if (resolved.stat !== undefined) {
    if (!resolved.stat.isFile()) {
      throw new UnprocessableError('ZOMG_BAD_MOUNTPOINT', `cannot mount ${what} at ${resolved.boxPath} in the box: it exists and is not a regular file`);
    }
    return resolved;
  }
  const parent = resolved.boxPath.slice(0, resolved.boxPath.lastIndexOf('/')) || '/';
  ensureDirInRoot(root, parent, what);
  const fd = openSync(resolved.hostPath, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
  closeSync(fd);
  chmodSync(resolved.hostPath, 0o644);
  return { ...resolved, stat: lstatSync(resolved.hostPath) };
}

export interface BoxUser {
  name: string;
  uid: number;
  gid: number;
  /** The home directory from /etc/passwd (zomg uses /home/<name> for project users). */
  passwdHome: string;
  shell: string;
}

/** Looks `user` (a name, or a numeric uid) up in the box's /etc/passwd. */
export function lookupUser(root: string, user: string): BoxUser {
  const passwd = resolveInRoot(root, '/etc/passwd');
  let text = '';
  if (passwd.stat?.isFile()) text = readFileSync(passwd.hostPath, 'utf8');
  for (const line of text.split('\n')) {
    const [name, , uid, gid, , home, shell] = line.split(':');
    if (name === undefined || uid === undefined || gid === undefined) continue;
    if (name === user || (/^\d+$/.test(user) && uid === user)) {
      // An empty field would read as 0 (root): refuse anything that is not a plain number.
      if (!/^\d{1,10}$/.test(uid) || !/^\d{1,10}$/.test(gid) || Number(uid) > 0xfffffffe || Number(gid) > 0xfffffffe) {
        throw new UnprocessableError('ZOMG_BAD_PASSWD_ENTRY', `the box's /etc/passwd entry of "${name}" has no valid uid or gid`, {
          hint: 'fix the entry inside the box (uid and gid must be numbers), for example with `usermod`',
        });
      }
      return { name, uid: Number(uid), gid: Number(gid), passwdHome: home || '/', shell: shell || '/bin/sh' };
    }
  }
  throw new InvalidArgumentError(`unknown user "${user}" in the box`, {
    code: 'ZOMG_UNKNOWN_USER',
    hint: 'create the user inside the box first (for example `useradd` or `adduser`), or omit --user to run as root',
  });
}

/**
 * Creates `/home/<user>` owned by the user when it is missing (the shared project home that
 * `--user` promises). The final component is created with mkdir (which never follows a
 * symlink) and chowned through an O_NOFOLLOW descriptor.
 */
export function ensureHome(root: string, user: BoxUser, boxPath: string): void {
  const resolved = resolveInRoot(root, boxPath);
  if (resolved.stat !== undefined) return;
  const parent = resolveInRoot(root, resolved.boxPath.slice(0, resolved.boxPath.lastIndexOf('/')) || '/');
  if (!parent.stat?.isDirectory()) return;
  try {
    mkdirSync(resolved.hostPath, { mode: 0o755 });
  } catch (err) {
    if (isErrno(err, 'EEXIST')) return;
    throw err;
  }
  const fd = openSync(resolved.hostPath, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  try {
    fchownSync(fd, user.uid, user.gid);
    fchmodSync(fd, 0o755);
  } finally {
    closeSync(fd);
  }
}
