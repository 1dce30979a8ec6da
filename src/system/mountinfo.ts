/** The one reader of /proc/<pid>/mountinfo (proc(5)): every mount of a process's mount namespace. */
import { readFileSync } from 'node:fs';

export interface MountEntry {
  /** `major:minor` of the filesystem: one per btrfs filesystem (st_dev differs between its subvolumes). */
  device: string;
  /** Where the filesystem is mounted. */
  point: string;
  /** The path inside the filesystem that the mount shows ("/" or e.g. "/@home"). */
  root: string;
  fstype: string;
  /** The mount source (a block device for btrfs). */
  source: string;
  /** Per-mount options, e.g. ["rw", "nosuid", "nodev", "noatime"]. */
  options: string[];
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(Number.parseInt(oct, 8)));

/** Parses a mountinfo text. */
function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const [pre, post] = line.split(' - ');
    if (!pre || !post) continue;
    const fields = pre.split(' ');
    const [fstype, source] = post.split(' ');
    const device = fields[2];
    const root = fields[3];
    const point = fields[4];
    if (device === undefined || root === undefined || point === undefined || fstype === undefined || source === undefined) continue;
    out.push({ device, point: unescape(point), root: unescape(root), fstype, source: unescape(source), options: (fields[5] ?? '').split(',') });
  }
  return out;
}

/** The mounts of process `pid` (default: this process). */
function readMountinfo(pid: number | 'self' = 'self'): MountEntry[] {
  return parseMountinfo(readFileSync(`/proc/${pid}/mountinfo`, 'utf8'));
}

/** The topmost mount exactly at `point`, if any. */
export function mountAt(point: string, mounts: MountEntry[] = readMountinfo()): MountEntry | undefined {
  let found: MountEntry | undefined;
  for (const m of mounts) if (m.point === point) found = m;
  return found;
}

/** The mount that holds `path` (a realpath): the longest mount point above it, the latest on ties. */
export function mountHolding(path: string, mounts: MountEntry[] = readMountinfo()): MountEntry | undefined {
  let best: MountEntry | undefined;
  for (const m of mounts) {
    const inside = m.point === '/' || path === m.point || path.startsWith(`${m.point}/`);
    if (inside && (best === undefined || m.point.length >= best.point.length)) best = m;
  }
  return best;
}
