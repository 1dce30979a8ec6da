/**
 * The shape of every box, as client and server both know it: the system and project
 * volumes mounted into each box (never part of its root: snapshots, restores, saved bases
 * and diffs leave them out), and where zomg keeps things inside a box.
 */

export interface BoxMount {
  /** Where the volume appears in the box. */
  path: string;
  /** `system`: one for the whole host; `project`: one per project. */
  scope: 'system' | 'project';
  /** The volume's name within its scope. */
  volume: 'bin' | 'all' | 'proj' | 'home';
  readOnly: boolean;
}

/** The volumes mounted into every box: `/box/bin` (read-only tools), `/box/all`, `/box/proj`, `/home`. */
export const BOX_MOUNTS: readonly BoxMount[] = [
  { path: '/box/bin', scope: 'system', volume: 'bin', readOnly: true },
  { path: '/box/all', scope: 'system', volume: 'all', readOnly: false },
  { path: '/box/proj', scope: 'project', volume: 'proj', readOnly: false },
  { path: '/home', scope: 'project', volume: 'home', readOnly: false },
];

/** The read-only tools volume; an image's PATH gets it appended. */
export const BOX_BIN = '/box/bin';

/**
 * The top-level directories those mounts live under, which zomg creates in every root as
 * mount points: a root diff hides them and everything below (their content is the volumes').
 */
export const BOX_MOUNT_ROOTS: readonly string[] = [...new Set(BOX_MOUNTS.map((m) => `/${m.path.split('/')[1]}`))];

/** Where `--bg` execs log inside a box. */
export const BG_LOG_DIR = '/tmp/boxes/exec';

/** True when `path` (absolute, bytes or text) is `prefix` or below it. */
export function isUnder(path: Buffer | string, prefix: Buffer | string): boolean {
  const p = typeof path === 'string' ? Buffer.from(path) : path;
  const pre = typeof prefix === 'string' ? Buffer.from(prefix) : prefix;
  if (p.length < pre.length || p.compare(pre, 0, pre.length, 0, pre.length) !== 0) return false;
  return p.length === pre.length || p[pre.length] === 0x2f;
}
