/**
 * Reading /proc: the facts `boxStatus` trusts instead of remembered state. A pid alone
 * says little (pids are reused, and a pid file survives a reboot), so a process is named
 * by its pid, its start time in clock ticks since boot (field 22 of /proc/<pid>/stat) and
 * the boot id.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { isErrno } from './fs.js';

export interface ProcStat {
  pid: number;
  /** One letter: R, S, D, Z, T, … */
  state: string;
  ppid: number;
  /** Clock ticks since boot; with the boot id it names a process uniquely. */
  startTime: number;
}

/** The parsed /proc/<pid>/stat, or undefined when the process does not exist. */
export function readProcStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ESRCH')) return undefined;
    throw err;
  }
  // comm (field 2) may hold spaces and parentheses; everything after the last ')' is plain.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const state = fields[0] ?? '?';
  return { pid, state, ppid: Number(fields[1]), startTime: Number(fields[19]) };
}

let cachedBootId: string | undefined;

/** The kernel's random id of this boot: a pid file written before a reboot is stale. */
export function bootId(): string {
  cachedBootId ??= readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  return cachedBootId;
}

/**
 * Host pids of the children of `pid`. This kernel has no /proc/<pid>/task/<tid>/children
 * (CONFIG_PROC_CHILDREN is off), so it scans every process; only used on rare paths
 * (signalling an exec, waiting for a box to come up).
 */
export function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readProcStat(Number(entry));
    if (stat?.ppid === pid) out.push(stat.pid);
  }
  return out;
}

/**
 * A process named so that a reused pid or a reboot can never pass for it: pid, start time
 * (clock ticks since boot) and the boot id.
 */
export interface ProcessIdentity {
  pid: number;
  startTime: number;
  bootId: string;
}

/** This process's identity. */
export function selfIdentity(): ProcessIdentity {
  const stat = readProcStat(process.pid);
  return { pid: process.pid, startTime: stat?.startTime ?? 0, bootId: bootId() };
}

/**
 * The one liveness check: the process with this identity is running now (same pid, same
 * start time, this boot, not a zombie). `startTime` undefined checks the pid alone (records
 * written before identities were kept).
 */
export function isAlive(id: { pid: number; startTime?: number | undefined; bootId?: string | undefined }): boolean {
  if (id.bootId !== undefined && id.bootId !== bootId()) return false;
  const stat = readProcStat(id.pid);
  if (stat === undefined || stat.state === 'Z' || stat.state === 'X') return false;
  return id.startTime === undefined || stat.startTime === id.startTime;
}
