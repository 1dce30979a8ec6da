/**
 * The default security profile of a box (SPEC §4, README "Security"): what bwrap is told
 * for the init and what zomg-enter applies to every exec.
 *
 * - Capabilities: docker's default set minus CAP_MKNOD (a box gets a ready /dev, and its
 *   root is mounted nodev, so a device node could not be opened anyway: refusing mknod
 *   outright says so at once).
 * - no_new_privs and the seccomp filter of seccomp.ts.
 * - /proc: bwrap already remounts /proc/sys, sysrq-trigger, irq and bus read-only; the
 *   kernel's memory, keys, log and timer interfaces are masked with /dev/null (nodev), and
 *   acpi/scsi/asound with an empty read-only tmpfs, as docker does. /sys is not mounted.
 * - Own network namespace (network.ts) and cgroup (cgroups.ts).
 */
import { existsSync, statSync } from 'node:fs';

/** Capability numbers (linux/capability.h) of the default profile. */
const DEFAULT_CAPS: Readonly<Record<string, number>> = {
  CAP_CHOWN: 0,
  CAP_DAC_OVERRIDE: 1,
  CAP_FOWNER: 3,
  CAP_FSETID: 4,
  CAP_KILL: 5,
  CAP_SETGID: 6,
  CAP_SETUID: 7,
  CAP_SETPCAP: 8,
  CAP_NET_BIND_SERVICE: 10,
  CAP_NET_RAW: 13,
  CAP_SYS_CHROOT: 18,
  CAP_AUDIT_WRITE: 29,
  CAP_SETFCAP: 31,
};

/** The capability mask for zomg-enter's `--caps` (hex). */
export function capMaskHex(): string {
  let mask = 0n;
  for (const bit of Object.values(DEFAULT_CAPS)) mask |= 1n << BigInt(bit);
  return mask.toString(16);
}

const MASKED_FILES = ['kcore', 'keys', 'kmsg', 'latency_stats', 'timer_list', 'timer_stats', 'sched_debug', 'sysrq-trigger', 'config.gz', 'kallsyms', 'kpagecount', 'kpageflags', 'kpagecgroup'];
const MASKED_DIRS = ['acpi', 'scsi', 'asound'];

/**
 * bwrap arguments for the default profile, placed after `--proc <proc>` (they mask paths
 * inside it; `proc` is the resolved mount point).
 */
export function defaultProfileArgs(proc: string): string[] {
  const args = ['--cap-drop', 'ALL'];
  for (const cap of Object.keys(DEFAULT_CAPS)) args.push('--cap-add', cap);
  // The box's /proc is the same kernel's: what exists in the host's exists there.
  for (const name of MASKED_FILES) if (existsSync(`/proc/${name}`)) args.push('--ro-bind', '/dev/null', `${proc}/${name}`);
  for (const name of MASKED_DIRS) {
    if (isDir(`/proc/${name}`)) args.push('--tmpfs', `${proc}/${name}`, '--remount-ro', `${proc}/${name}`);
  }
  return args;
}

function isDir(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/**
 * bwrap arguments for a privileged box (docker or systemd inside): the host's /sys,
 * recursively and writable, so its cgroup hierarchies (v1, v2 or both) are there to create
 * cgroups in, as under `docker run --privileged`. `sys` is the resolved mount point.
 */
export function privilegedProfileArgs(sys: string): string[] {
  return ['--bind', '/sys', sys];
}
