/**
 * A small real btrfs filesystem on a loop image for one test. Always unmounted (which
 * detaches the loop device) by `cleanup`, even after a failed test.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestPool {
  /** A scratch directory holding the image and the mount point. */
  dir: string;
  /** The mounted btrfs filesystem. */
  mnt: string;
  image: string;
  cleanup(): void;
}

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

export function makeTestPool(sizeMb = 512): TestPool {
  const dir = mkdtempSync(join(tmpdir(), 'zomg-test-'));
  const image = join(dir, 'pool.img');
  const mnt = join(dir, 'mnt');
  mkdirSync(mnt);
  execFileSync('truncate', ['-s', `${sizeMb}M`, image]);
  execFileSync('mkfs.btrfs', ['-q', ...(sizeMb < 256 ? ['--mixed'] : []), image]);
  // As zomg mounts its own pool (storage/pool.ts): nosuid,nodev (zomg warns about a configured
  // pool without them) and noatime (with atime, a read in a box, or a benchmark's rsync of a
  // box root, rewrites inode metadata that the snapshots shared, and every later send pays).
  execFileSync('mount', ['-o', 'loop,noatime,nosuid,nodev', image, mnt]);
  let done = false;
  return {
    dir,
    mnt,
    image,
    cleanup() {
      if (done) return;
      done = true;
      killBoxesUnder(mnt);
      try {
        execFileSync('umount', ['-l', mnt], { stdio: 'ignore' });
      } catch {
        /* already unmounted */
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A safety net for tests that failed before stopping their boxes: box processes started on
 * this test's pool (their root is a mount of this pool's loop device) are killed, so the
 * unmount can detach the loop device. Only processes rooted in this test's own pool are
 * touched.
 */
export function killBoxesUnder(mnt: string): void {
  const source = mountSource(readFileSync('/proc/self/mountinfo', 'utf8'), mnt);
  if (!source) return;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    let info: string;
    try {
      info = readFileSync(`/proc/${entry}/mountinfo`, 'utf8');
    } catch {
      continue;
    }
    if (mountSource(info, '/') !== source) continue;
    try {
      process.kill(Number(entry), 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
}

/** The source device of the mount at `point` in a mountinfo text. */
function mountSource(mountinfo: string, point: string): string | undefined {
  for (const line of mountinfo.split('\n')) {
    const fields = line.split(' ');
    if (fields[4] !== point) continue;
    const dash = fields.indexOf('-');
    if (dash > 0 && fields[dash + 1] === 'btrfs') return fields[dash + 2];
  }
  return undefined;
}
