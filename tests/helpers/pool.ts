/**
 * A small real btrfs filesystem on a loop image for one test. Always unmounted (which
 * detaches the loop device) by `cleanup`, even after a failed test.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
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
  execFileSync('mount', ['-o', 'loop', image, mnt]);
  let done = false;
  return {
    dir,
    mnt,
    image,
    cleanup() {
      if (done) return;
      done = true;
      try {
        execFileSync('umount', ['-l', mnt], { stdio: 'ignore' });
      } catch {
        /* already unmounted */
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
