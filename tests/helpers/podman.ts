/**
 * zomg's podman store of a test pool (`<pool>/staging/podman`, btrfs driver, its own
 * runroot): inspect it, and wipe it before the pool is unmounted. Never the host's store.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { podmanStoreFor } from '../../src/engine/builds.js';

export function hasPodman(): boolean {
  try {
    execFileSync('podman', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export interface TestStore {
  root: string;
  runroot: string;
  podman(...args: string[]): string;
  /** What is in the store: image ids and container ids (buildah's included), newline-separated. */
  leftovers(): { images: string; containers: string };
  /** Removes every container and image, podman's subvolumes and the runroot. */
  wipe(): void;
}

export function testStore(poolRoot: string): TestStore {
  const opts = podmanStoreFor(poolRoot);
  const root = opts.podmanRoot as string;
  const runroot = opts.podmanRunroot as string;
  const podman = (...args: string[]): string =>
    execFileSync('podman', ['--root', root, '--runroot', runroot, '--storage-driver', 'btrfs', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return {
    root,
    runroot,
    podman,
    leftovers: () => ({ images: podman('images', '-a', '-q').trim(), containers: podman('ps', '-a', '--external', '-q').trim() }),
    wipe() {
      try {
        if (existsSync(root)) {
          // Not `podman system reset`: it also deletes the host's podman networks.
          const ids = podman('ps', '-a', '--external', '-q').trim();
          if (ids) podman('rm', '-f', ...ids.split('\n'));
          podman('rmi', '-a', '-f');
          const subvols = execFileSync('btrfs', ['subvolume', 'list', '-o', poolRoot], { encoding: 'utf8' })
            .split('\n')
            .map((l) => /path (?:.*\/)?(staging\/podman\/.*)$/.exec(l)?.[1])
            .filter((p): p is string => p !== undefined);
          for (const p of subvols.reverse()) execFileSync('btrfs', ['subvolume', 'delete', join(poolRoot, p)], { stdio: 'ignore' });
        }
      } finally {
        rmSync(runroot, { recursive: true, force: true });
      }
    },
  };
}
