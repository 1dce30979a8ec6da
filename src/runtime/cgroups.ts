/**
 * A cgroup per box: every process of the box (the init, and each exec, which zomg-enter
 * moves in before it enters) is in it, so `--cpus`, `--memory` and `--pids` hold for the
 * box as a whole.
 *
 * Two layouts, found at run time:
 * - cgroup v2 (unified, most hosts today): `/sys/fs/cgroup/zomg/<id>`, with the cpu,
 *   memory and pids controllers enabled down the path; `cpu.max`, `memory.max` (+
 *   `memory.swap.max` 0), `pids.max`.
 * - cgroup v1 or hybrid (v1 controllers under /sys/fs/cgroup/<ctrl>, as on this project's
 *   test machine): `/sys/fs/cgroup/{cpu,memory,pids}/zomg/<id>`; `cpu.cfs_quota_us`,
 *   `memory.limit_in_bytes` (+ `memsw` when swap accounting is on), `pids.max`.
 * Only what a limit needs is made and joined (on v1, only the hierarchies of the limits
 * set): moving a process between v1 cgroups costs milliseconds per hierarchy (the kernel
 * waits for an RCU grace period), which every exec would pay. Without limits a box has
 * no cgroup of its own. A host where none of that can be written gets a clear error.
 */
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { UnsupportedError } from '../core/errors.js';
import { isErrno } from '../system/fs.js';

const ROOT = '/sys/fs/cgroup';
const GROUP = 'zomg';
const CPU_PERIOD_US = 100_000;

export interface CgroupLimits {
  cpus: number | null;
  memoryBytes: number | null;
  pids: number | null;
}

type CgroupMode = 'v2' | 'v1';

function cgroupMode(): CgroupMode | undefined {
  if (existsSync(join(ROOT, 'cgroup.controllers'))) return 'v2';
  if (existsSync(join(ROOT, 'memory')) && existsSync(join(ROOT, 'pids'))) return 'v1';
  return undefined;
}

/** The box's cgroup directories (one in v2, one per controller in v1). */
function cgroupDirs(id: string, mode: CgroupMode): string[] {
  return mode === 'v2' ? [join(ROOT, GROUP, id)] : ['cpu', 'memory', 'pids'].map((c) => join(ROOT, c, GROUP, id));
}

function write(dir: string, file: string, value: string): void {
  writeFileSync(join(dir, file), value);
}

function enableV2Controllers(): void {
  const available = readFileSync(join(ROOT, 'cgroup.controllers'), 'utf8').split(/\s+/);
  const wanted = ['cpu', 'memory', 'pids'].filter((c) => available.includes(c));
  for (const dir of [ROOT, join(ROOT, GROUP)]) {
    mkdirSync(dir, { recursive: true });
    const enabled = readFileSync(join(dir, 'cgroup.subtree_control'), 'utf8').split(/\s+/);
    const missing = wanted.filter((c) => !enabled.includes(c));
    if (missing.length > 0) write(dir, 'cgroup.subtree_control', missing.map((c) => `+${c}`).join(' '));
  }
}

/**
 * Creates (or reuses) the box's cgroup and writes its limits (`max` where none).
 * @returns the `cgroup.procs` files a process writes itself into to join the box.
 */
export function setupCgroup(id: string, limits: CgroupLimits): string[] {
  const wantsLimit = limits.cpus !== null || limits.memoryBytes !== null || limits.pids !== null;
  if (!wantsLimit) return [];
  const mode = cgroupMode();
  if (mode === undefined) {
    throw new UnsupportedError('ZOMG_CGROUPS_UNAVAILABLE', 'resource limits need cgroups, and this host has none zomg can use', {
      hint: 'create the box without --cpus, --memory and --pids',
    });
  }
  const [cpu, memory, pids] = cgroupDirs(id, 'v1') as [string, string, string];
  const dirs =
    mode === 'v2'
      ? cgroupDirs(id, mode)
      : [...(limits.cpus !== null ? [cpu] : []), ...(limits.memoryBytes !== null ? [memory] : []), ...(limits.pids !== null ? [pids] : [])];
  try {
    if (mode === 'v2') enableV2Controllers();
    for (const dir of dirs) mkdirSync(dir, { recursive: true });
    if (mode === 'v2') {
      const [dir] = dirs as [string];
      write(dir, 'cpu.max', limits.cpus !== null ? `${Math.round(limits.cpus * CPU_PERIOD_US)} ${CPU_PERIOD_US}` : `max ${CPU_PERIOD_US}`);
      write(dir, 'memory.max', limits.memoryBytes !== null ? String(limits.memoryBytes) : 'max');
      if (existsSync(join(dir, 'memory.swap.max'))) write(dir, 'memory.swap.max', limits.memoryBytes !== null ? '0' : 'max');
      write(dir, 'pids.max', limits.pids !== null ? String(limits.pids) : 'max');
    } else {
      if (limits.cpus !== null) {
        write(cpu, 'cpu.cfs_period_us', String(CPU_PERIOD_US));
        write(cpu, 'cpu.cfs_quota_us', String(Math.round(limits.cpus * CPU_PERIOD_US)));
      }
      if (limits.memoryBytes !== null) {
        // No swap on top: memsw (when swap accounting is on) equals the limit.
        write(memory, 'memory.limit_in_bytes', String(limits.memoryBytes));
        if (existsSync(join(memory, 'memory.memsw.limit_in_bytes'))) write(memory, 'memory.memsw.limit_in_bytes', String(limits.memoryBytes));
      }
      if (limits.pids !== null) write(pids, 'pids.max', String(limits.pids));
    }
  } catch (err) {
    throw new UnsupportedError('ZOMG_CGROUPS_UNAVAILABLE', 'could not set up the box\'s cgroup for its resource limits', {
      cause: err,
      hint: 'zomg needs to run as root on a host with the cpu, memory and pids cgroup controllers',
    });
  }
  return dirs.map((d) => join(d, 'cgroup.procs'));
}

/** Removes the box's cgroup once its processes are gone (a few retries: the kernel frees it lazily). */
export async function removeCgroup(id: string): Promise<void> {
  const mode = cgroupMode();
  if (mode === undefined) return;
  for (const dir of cgroupDirs(id, mode)) {
    for (let attempt = 0; ; attempt++) {
      try {
        rmdirSync(dir);
        break;
      } catch (err) {
        if (isErrno(err, 'ENOENT')) break;
        if (!isErrno(err, 'EBUSY') || attempt >= 50) throw err;
        await sleep(20);
      }
    }
  }
}
