/**
 * Running boxes: the sandbox that `exec` enters.
 *
 * Mechanism (measured in research/machine.md §2 and bench/exec.ts):
 *
 * - **start** runs `bwrap` detached (its own session, stdio to `<runDir>/init.log`, no
 *   `--die-with-parent`) with new PID, mount, UTS and IPC namespaces. bwrap does the whole
 *   mount setup in one audited program: the root bind-mounted at `/`, a fresh `/proc` of
 *   the box's PID namespace, a minimal `/dev` (null, zero, full, random, urandom, tty,
 *   `/dev/pts` newinstance, fd/stdin/stdout/stderr symlinks) plus a 1777 tmpfs on
 *   `/dev/shm`, a 1777 tmpfs on `/tmp`, the host's resolv.conf read-only, the volumes; then
 *   it pivots into the root and detaches the host's tree, so the box's mount namespace
 *   holds no host mount (nothing pinned, nothing visible) and nothing was ever mounted in
 *   the host's namespace (bwrap makes propagation private first). PID 1 of the box is
 *   bwrap's own small reaper (it adopts and reaps orphans, e.g. `--bg` jobs, and is immune
 *   to signals sent from inside); PID 2 is `sleep infinity` from the rootfs, which keeps
 *   the box alive (both busybox and coreutils understand `infinity`). The init outlives
 *   the process that started it, so the CLI can exit and the server can restart.
 *   bwrap mounts every bind `nosuid`; the root is remounted afterwards without it (with
 *   util-linux `mount -N`, which enters the namespace itself, so no box binary is needed)
 *   so that sudo/su work for project users, as in the documented privileged container.
 *   The argument list goes through `--args <fd>`: the box's `/proc/1/cmdline` then shows
 *   `bwrap --args 3 --info-fd 4 -- sleep infinity` instead of host paths.
 *
 * - **exec** is zomg-enter (enter.ts; util-linux `nsenter` for boxes started by older
 *   versions): it joins the box's cgroup and the init's namespaces (PID, mount, UTS, IPC,
 *   and network and cgroup for a default box), chroots to the init's root and forks the
 *   command into the box's PID namespace with the box's profile applied. No setup is
 *   repeated, so it costs less than a fresh `bwrap … true` (see bench/exec.ts).
 *
 * - **state**: `<runDir>/init.json` records the init's host pid, its start time (clock
 *   ticks since boot) and the boot id. It is a hint, never the truth: `boxStatus` checks
 *   that the pid is alive, started at that tick in this boot, and has the box's root as
 *   its root (same device and inode). A pid file from before a reboot is therefore stale.
 *
 * Trust model: a box runs with the default profile unless its config says `privileged`.
 * The default profile (profile.ts, seccomp.ts, network.ts, cgroups.ts, enter.ts) makes the
 * box a boundary: docker's capability set (minus mknod), no_new_privs, a seccomp filter,
 * masked /proc paths, its own network and cgroup namespaces and cgroup; every exec goes
 * through zomg-enter, which applies the same profile after entering. A privileged box is
 * host root with every capability, the host's network and the host's /sys with its cgroup
 * hierarchies (docker or systemd inside; tests/integration/nested-docker.test.ts): the
 * sandbox then gives it its own view, not a security boundary.
 */
import type { ChildProcess } from 'node:child_process';
import { accessSync, closeSync, constants as fsConstants, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { basename, delimiter, join, posix } from 'node:path';
import type { Readable, Stream, Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { BG_LOG_DIR, BOX_BIN } from '../core/box-layout.js';
import { ConflictError, InvalidArgumentError, NotFoundError, ToolError, UnprocessableError } from '../core/errors.js';
import { DEFAULT_BOX_CONFIG } from '../core/limits.js';
import type { BoxConfig } from '../core/types.js';
import { childProcess } from '../system/builtins.js';
import { atomicWriteFile, isErrno } from '../system/fs.js';
import { LockManager } from '../system/lock.js';
import { mountAt } from '../system/mountinfo.js';
import { CommandError, run } from '../system/run.js';
import { DEFAULT_PATH, checkEnvKeys, execEnvironment, installBoxEnvironment, type ExecIdentity } from './environment.js';
import { removeCgroup, setupCgroup } from './cgroups.js';
import { enterHelper } from './enter.js';
import { boxResolvConf, makeLifeline, startNetwork, stopNetwork } from './network.js';
import { commandExists, commandNotFound, commandNotFoundMessage } from './command-lookup.js';
import { bootId, childPids, readProcStat } from '../system/procfs.js';
import { capMaskHex, defaultProfileArgs, privilegedProfileArgs } from './profile.js';
import { seccompFilter } from './seccomp.js';
import { ensureDirInRoot, ensureFileInRoot, ensureHome, lookupUser, resolveInRoot } from './rootfs.js';

export interface BoxVolume {
  /** A directory (or file) on the host. */
  hostPath: string;
  /** Absolute path inside the box; created (mode 0755) in the root when missing. */
  boxPath: string;
  readOnly: boolean;
}

export interface BoxSpec {
  /** The box's id; only recorded, for debugging. */
  id: string;
  /** The box's root directory on the host (its writable subvolume). */
  root: string;
  /** `<box>.<project>` */
  hostname: string;
  /**
   * The complete injected environment: the reserved variables and the user's (see
   * `boxEnvironment`). Written to /etc/boxes-env and given to every exec.
   */
  env: Record<string, string>;
  /** System, project and data volumes, bind-mounted in the box's mount namespace only. */
  volumes: BoxVolume[];
  /** A host directory private to this box for the runtime's state (created, mode 0700). */
  runDir: string;
  /** Test hook: called between the steps of a start (crash injection). */
  fault?: (step: string) => void | Promise<void>;
  /** Security profile and limits; default: the default profile, no limits. */
  config?: BoxConfig;
}

export type BoxRunState = 'running' | 'stopped';

/** What a stdio slot of an exec is connected to, as for `child_process.spawn`. */
export type ExecStdio = 'pipe' | 'inherit' | 'ignore' | Stream | number;

export interface ExecOptions {
  /** argv; with `shell` the words are joined by spaces into one `/bin/sh -c` string. */
  command: string[];
  /** Per-exec variables, on top of the box's environment. */
  env?: Record<string, string>;
  /** Working directory inside the box; must exist. Default: the user's home when it exists, else `/`. */
  cwd?: string;
  /** Run the command through `/bin/sh -c` (`--sh`). */
  shell?: boolean;
  /** A user of the box's /etc/passwd (name or uid). Default: root. */
  user?: string;
  stdin?: ExecStdio;
  stdout?: ExecStdio;
  stderr?: ExecStdio;
  /** Aborting sends SIGKILL to the command. */
  signal?: AbortSignal;
}

export interface ExecHandle {
  /** Host pid of the entry program (zomg-enter, or nsenter) that waits for the command. */
  readonly pid: number;
  readonly stdin: Writable | null;
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  /**
   * The command's exit code once it has exited and its output streams are closed: its own
   * code, 127 when the command does not exist, 126 when it cannot be executed, 128+N when
   * killed by signal N. Rejects only when the exec could not be started at all.
   */
  readonly exited: Promise<number>;
  /** Sends `signal` (default SIGTERM) to the command inside the box. */
  kill(signal?: NodeJS.Signals): void;
}

export interface BackgroundExec {
  /** The job's pid inside the box's PID namespace (what `ps` in the box shows). */
  pid: number;
  /** Where its stdout and stderr go, inside the box. */
  logPath: string;
}

/** What `init.json` holds (see the file comment: a hint that status re-checks). */
interface InitRecord {
  version: 1;
  id: string;
  pid: number;
  startTime: number;
  bootId: string;
  rootDev: number;
  rootIno: number;
  hostname: string;
  env: Record<string, string>;
  /** PATH for execs unless `env` has one. */
  path: string;
  /** How execs enter (absent in records of older versions: nsenter, privileged). */
  enter?: {
    helper: string;
    privileged: boolean;
    /** Own network / cgroup namespace to join. */
    netns: boolean;
    cgroupns: boolean;
    /** `cgroup.procs` files of the box's cgroup. */
    cgroups: string[];
  };
}

const RECORD = 'init.json';
/** bwrap's info (the init's pid), written by bwrap itself. */
const INFO = 'init.info';
/** The argument list handed to bwrap. */
const ARGS = 'init.args';
/** A start in progress: the instant after which its init was made. */
const INTENT = 'starting.json';
/** USER_HZ: the unit of /proc/<pid>/stat start times (100 on every Linux ABI zomg runs on). */
const CLOCK_TICKS = 100;
const SECCOMP = 'seccomp.bpf';
/** A default box's resolv.conf, handed to bwrap as data. */
const RESOLV = 'resolv.conf';
/** The fd bwrap reads the seccomp program from. */
const SECCOMP_FD = 5;
/** The fd bwrap reads a default box's resolv.conf from. */
const RESOLV_FD = 6;
/** The fd of the box's end of its network helper's lifeline (network.ts `makeLifeline`). */
const LIFELINE_FD = 7;
const LOG = 'init.log';
const LOCK = 'sandbox';
const KEEPER = ['sleep', 'infinity'];
const START_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 15_000;

// ---------------------------------------------------------------------------------------
// Tools

const toolPaths = new Map<string, string>();

/** Absolute path of a host tool (execs get the box's PATH, so the tool is resolved here). */
function tool(name: string, pkg: string): string {
  const cached = toolPaths.get(name);
  if (cached !== undefined) return cached;
  for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, fsConstants.X_OK);
      toolPaths.set(name, candidate);
      return candidate;
    } catch {
      /* not in this directory */
    }
  }
  throw new ToolError('ZOMG_TOOL_MISSING', `${name} is not installed`, { hint: `install the ${pkg} package` });
}

// ---------------------------------------------------------------------------------------
// State

function readRecord(runDir: string): InitRecord | undefined {
  let text: string;
  try {
    text = readFileSync(join(runDir, RECORD), 'utf8');
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) return undefined;
    throw err;
  }
  try {
    const record = JSON.parse(text) as InitRecord;
    return record.version === 1 && Number.isInteger(record.pid) ? record : undefined;
  } catch {
    return undefined; // a torn or foreign file names no running box
  }
}

function removeRecord(runDir: string): void {
  try {
    unlinkSync(join(runDir, RECORD));
  } catch (err) {
    if (!isErrno(err, 'ENOENT')) throw err;
  }
}

/** True when the recorded init is this very process, alive (a zombie has finished). */
function initAlive(record: InitRecord): boolean {
  if (record.bootId !== bootId()) return false;
  const stat = readProcStat(record.pid);
  return stat !== undefined && stat.startTime === record.startTime && stat.state !== 'Z' && stat.state !== 'X';
}

/** Device and inode of the root of process `pid`, or undefined when it is gone. */
function processRoot(pid: number): { dev: number; ino: number } | undefined {
  try {
    const st = statSync(`/proc/${pid}/root/`);
    return { dev: st.dev, ino: st.ino };
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ESRCH', 'EACCES', 'ENOTDIR')) return undefined;
    throw err;
  }
}

function statRoot(root: string): { dev: number; ino: number } | undefined {
  try {
    const st = statSync(root);
    return st.isDirectory() ? { dev: st.dev, ino: st.ino } : undefined;
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) return undefined;
    throw err;
  }
}

function sameFile(a: { dev: number; ino: number } | undefined, b: { dev: number; ino: number } | undefined): boolean {
  return a !== undefined && b !== undefined && a.dev === b.dev && a.ino === b.ino;
}

/** The record of a running init whose root is still the recorded root, or undefined. */
function liveRecord(runDir: string): InitRecord | undefined {
  const record = readRecord(runDir);
  if (record === undefined || !initAlive(record)) return undefined;
  return sameFile(processRoot(record.pid), { dev: record.rootDev, ino: record.rootIno }) ? record : undefined;
}

/** True while the recorded init of this run directory lives (or a start cut short left one running). */
export function isRunning(runDir: string): boolean {
  return liveRecord(runDir) !== undefined || strayInit(runDir) !== undefined;
}

/**
 * Whether the box whose root is `root` is running: its recorded init is alive, is the
 * process that was recorded (same start time, same boot) and has `root` as its root.
 */
export async function boxStatus(runDir: string, root: string): Promise<BoxRunState> {
  const record = readRecord(runDir);
  if (record === undefined || !initAlive(record)) return 'stopped';
  return sameFile(processRoot(record.pid), statRoot(root)) ? 'running' : 'stopped';
}

// ---------------------------------------------------------------------------------------
// Start

/** The bwrap arguments for a box, after preparing its root (mountpoints, /etc/boxes-env). */
function prepareRoot(spec: BoxSpec, config: BoxConfig): { args: string[]; path: string } {
  checkEnvKeys(spec.env);
  for (const volume of spec.volumes) {
    if (!posix.isAbsolute(volume.boxPath)) {
      throw new InvalidArgumentError(`volume mount path "${volume.boxPath}" must be absolute`, { code: 'ZOMG_INVALID_MOUNT_PATH' });
    }
  }
  installBoxEnvironment(spec.root, spec.env);

  // Every destination is resolved here, the way the box sees its own symlinks, and created
  // when missing, so bwrap never follows a symlink of the box's making (see rootfs.ts).
  const dir = (boxPath: string, what: string): string => ensureDirInRoot(spec.root, boxPath, what).boxPath;
  const proc = dir('/proc', '/proc');
  const dev = dir('/dev', '/dev');
  const tmp = dir('/tmp', '/tmp');
  const args = [
    '--unshare-pid',
    '--unshare-uts',
    '--unshare-ipc',
    ...(config.privileged ? [] : ['--unshare-net', '--unshare-cgroup']),
    '--hostname',
    spec.hostname,
    '--bind',
    spec.root,
    '/',
    '--proc',
    proc,
    ...(config.privileged ? [] : defaultProfileArgs(proc)),
    '--dev',
    dev,
    ...(config.privileged ? privilegedProfileArgs(dir('/sys', '/sys')) : []),
    '--perms',
    '1777',
    '--tmpfs',
    posix.join(dev, 'shm'),
    '--perms',
    '1777',
    '--tmpfs',
    tmp,
    // Ready for `--bg` logs of any user: sticky and world-writable like /tmp itself.
    '--perms',
    '1777',
    '--dir',
    posix.join(tmp, 'boxes'),
    '--perms',
    '1777',
    '--dir',
    posix.join(tmp, 'boxes/exec'),
  ];

  // The host's DNS configuration, read-only. A bind mount needs an existing file: a rootfs
  // without /etc/resolv.conf gets an empty one (the only file zomg adds to a root besides
  // /etc/boxes-env and the mountpoint directories); a symlink (systemd-resolved style) is
  // followed inside the box and its target is the mountpoint.
  // A box with its own network gets slirp4netns's DNS (network.ts) instead, handed over
  // as data (so the box's mount table names no host file).
  if (!config.privileged || isFile('/etc/resolv.conf')) {
    const resolv = resolveInRoot(spec.root, '/etc/resolv.conf');
    if (resolv.stat === undefined || resolv.stat.isFile()) {
      const dest = ensureFileInRoot(spec.root, '/etc/resolv.conf', 'the DNS configuration').boxPath;
      if (config.privileged) args.push('--ro-bind', '/etc/resolv.conf', dest);
      else args.push('--perms', '0644', '--ro-bind-data', String(RESOLV_FD), dest);
    }
  }

  // Parents before children (/home before /home/alice/data), so no mount hides another.
  const volumes = [...spec.volumes].sort((a, b) => depth(a.boxPath) - depth(b.boxPath));
  for (const volume of volumes) {
    const what = `volume ${volume.boxPath}`;
    const dest = isDirectory(volume.hostPath) ? dir(volume.boxPath, what) : ensureFileInRoot(spec.root, volume.boxPath, what).boxPath;
    args.push(volume.readOnly ? '--ro-bind' : '--bind', volume.hostPath, dest);
  }

  const path = volumes.some((v) => posix.normalize(v.boxPath) === BOX_BIN) ? `${DEFAULT_PATH}:${BOX_BIN}` : DEFAULT_PATH;
  if (!config.privileged) args.push('--seccomp', String(SECCOMP_FD));
  args.push('--chdir', '/', '--clearenv', '--setenv', 'PATH', path);
  for (const [key, value] of Object.entries(spec.env)) args.push('--setenv', key, value);
  return { args, path };
}

function depth(boxPath: string): number {
  return posix.normalize(boxPath).split('/').filter(Boolean).length;
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch (err) {
    if (isErrno(err, 'ENOENT')) {
      // The host path stays in `cause`: messages reach API clients, host paths must not.
      throw new UnprocessableError('ZOMG_VOLUME_MISSING', 'the host directory of a volume is missing', { cause: err });
    }
    throw err;
  }
}

function logTail(runDir: string): string {
  try {
    return readFileSync(join(runDir, LOG), 'utf8').trim().split('\n').slice(-5).join(' | ');
  } catch {
    return '';
  }
}

function startFailed(runDir: string, why: string, cause?: unknown): ToolError {
  const log = logTail(runDir);
  return new ToolError('ZOMG_BOX_START_FAILED', `the box could not be started: ${why}${log ? ` (${log})` : ''}`, {
    cause,
    hint: `the box's ${LOG} in its run directory (under the state directory) has the details`,
  });
}

function killQuiet(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch (err) {
    if (!isErrno(err, 'ESRCH')) throw err;
  }
}

async function launch(spec: BoxSpec, rootId: { dev: number; ino: number }, timeoutMs: number): Promise<InitRecord> {
  const config = spec.config ?? DEFAULT_BOX_CONFIG;
  // First, before anything is made: a host the filter is not built for refuses a default box.
  const filter = config.privileged ? undefined : seccompFilter();
  tool('bwrap', 'bubblewrap'); // run by name from the host's PATH, so /proc/1/cmdline names no host path
  const mount = tool('mount', 'mount (util-linux)');
  const slirp = config.privileged ? undefined : tool('slirp4netns', 'slirp4netns');
  const helper = await enterHelper();
  const { args, path } = prepareRoot(spec, config);
  const deadline = Date.now() + timeoutMs;

  // The arguments, bwrap's info, the seccomp program and the box's resolv.conf go through
  // FILES, never pipes to this process: a caller killed half-way must not leave bwrap with
  // half its arguments, nor kill it with SIGPIPE while it reports the init's pid (its child
  // would then wait forever, holding a copy of the host's mount namespace). bwrap finishes
  // on its own; the pre-start intent and the info file let the next start, stop or delete
  // find what it started.
  for (const arg of args) {
    if (arg.includes('\0')) throw new InvalidArgumentError('a sandbox argument contains a NUL byte', { code: 'ZOMG_INVALID_INPUT' });
  }
  writeIntent(spec.runDir);
  const cgroups = setupCgroup(spec.id, { cpus: config.cpus, memoryBytes: config.memory_bytes, pids: config.pids });
  const argsPath = join(spec.runDir, ARGS);
  atomicWriteFile(argsPath, Buffer.from(args.map((a) => `${a}\0`).join('')), 0o600);
  const lifeline = slirp !== undefined ? await makeLifeline(spec.runDir) : undefined;
  const opened: number[] = [];
  const open = (path: string, flags: string, mode?: number): number => {
    const fd = openSync(path, flags, mode);
    opened.push(fd);
    return fd;
  };
  let child: ChildProcess;
  try {
    const logFd = open(join(spec.runDir, LOG), 'a', 0o600);
    // fd 3: the argument list (NUL-separated); fd 4: bwrap's info (the init's pid);
    // fd 5: the seccomp program; fd 6: the box's resolv.conf; fd 7: the network lifeline.
    const stdio: Array<'ignore' | number> = ['ignore', logFd, logFd, open(argsPath, 'r'), open(join(spec.runDir, INFO), 'w', 0o600)];
    if (filter !== undefined) {
      atomicWriteFile(join(spec.runDir, SECCOMP), filter, 0o600);
      atomicWriteFile(join(spec.runDir, RESOLV), boxResolvConf(), 0o600);
      stdio[SECCOMP_FD] = open(join(spec.runDir, SECCOMP), 'r');
      stdio[RESOLV_FD] = open(join(spec.runDir, RESOLV), 'r');
    }
    if (lifeline !== undefined) stdio[LIFELINE_FD] = lifeline.writeFd;
    // zomg-enter puts bwrap (and so every process of the box) into the box's cgroup before it runs.
    child = childProcess().spawn(helper, [...cgroups.flatMap((c) => ['--cgroup', c]), '--', 'bwrap', '--args', '3', '--info-fd', '4', '--', ...KEEPER], {
      argv0: 'bwrap',
      detached: true,
      stdio: stdio.map((x) => x ?? 'ignore'),
      env: { PATH: process.env.PATH ?? DEFAULT_PATH },
    });
  } finally {
    for (const fd of opened) closeSync(fd);
    if (lifeline !== undefined) closeSync(lifeline.writeFd);
  }
  let exited: string | undefined;
  let spawnError: unknown;
  child.on('error', (err) => (spawnError = err));
  child.on('exit', (code, signal) => (exited = signal ?? `exit ${code}`));
  await spec.fault?.('start:spawned');

  let pid: number | undefined;
  try {
    for (;;) {
      if (spawnError !== undefined) throw spawnError;
      pid = readInfoPid(spec.runDir);
      if (pid !== undefined) break;
      if (exited !== undefined) throw startFailed(spec.runDir, `bwrap ended (${exited})`);
      if (Date.now() > deadline) throw startFailed(spec.runDir, 'bwrap did not report the init process');
      await sleep(2);
    }
    const stat = readProcStat(pid);
    if (stat === undefined) throw startFailed(spec.runDir, 'the init process exited at once');

    // Record the init before anything else can fail, so an interrupted start leaves a box
    // that `stopBox` can find rather than an orphan nobody knows about.
    const record: InitRecord = {
      version: 1,
      id: spec.id,
      pid,
      startTime: stat.startTime,
      bootId: bootId(),
      rootDev: rootId.dev,
      rootIno: rootId.ino,
      hostname: spec.hostname,
      env: spec.env,
      path,
      enter: { helper, privileged: config.privileged, netns: !config.privileged, cgroupns: !config.privileged, cgroups },
    };
    atomicWriteFile(join(spec.runDir, RECORD), JSON.stringify(record, null, 2), 0o600);

    // Ready when the init has pivoted into the root (all mounts are done by then) and the
    // keeper, PID 2 in the box, has been exec'd (its name is no longer bwrap's).
    for (;;) {
      if (exited !== undefined) throw startFailed(spec.runDir, `bwrap ended (${exited})`);
      if (Date.now() > deadline) throw startFailed(spec.runDir, `not ready after ${timeoutMs} ms`);
      if (sameFile(processRoot(pid), rootId) && readKeeperName(pid) === KEEPER[0]) break;
      await sleep(5);
    }

    try {
      await run(mount, ['-N', String(pid), '-o', 'remount,bind,nodev', '/'], { timeoutMs: 10_000 });
    } catch (err) {
      throw startFailed(spec.runDir, 'could not remount the root without nosuid', err);
    }
    // The kernel's tunables are host-wide: read-only for every box (bwrap leaves /proc/sys
    // writable when it runs as root). Paths are the box's: mount -N enters its mount namespace.
    try {
      await run(mount, ['-N', String(pid), '--bind', '/proc/sys', '/proc/sys'], { timeoutMs: 10_000 });
      await run(mount, ['-N', String(pid), '-o', 'remount,bind,ro,nosuid,nodev,noexec', '/proc/sys'], { timeoutMs: 10_000 });
    } catch (err) {
      throw startFailed(spec.runDir, 'could not make /proc/sys read-only', err);
    }
    if (slirp !== undefined && lifeline !== undefined) await startNetwork(slirp, spec.runDir, pid, config.publish, lifeline.readFd);
    return record;
  } catch (err) {
    if (pid !== undefined) {
      killQuiet(pid);
      await waitGone(pid, readProcStat(pid)?.startTime, 5000).catch(() => undefined);
    }
    await stopNetwork(spec.runDir);
    await removeCgroup(spec.id).catch(() => undefined);
    removeRecord(spec.runDir);
    if (err instanceof ConflictError || err instanceof InvalidArgumentError) throw err;
    throw err instanceof ToolError ? err : startFailed(spec.runDir, (err as Error).message, err);
  } finally {
    clearIntent(spec.runDir);
    if (lifeline !== undefined) closeSync(lifeline.readFd);
    child.unref();
  }
}

/** The init's pid as bwrap reported it in the info file, once the report is complete. */
function readInfoPid(runDir: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(join(runDir, INFO), 'utf8');
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    throw err;
  }
  try {
    const pid = (JSON.parse(text) as { 'child-pid'?: unknown })['child-pid'];
    return typeof pid === 'number' && Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined; // not written completely yet
  }
}

/** Clock ticks since boot, the unit of a process's start time. */
function uptimeTicks(): number {
  const seconds = Number.parseFloat(readFileSync('/proc/uptime', 'utf8').split(' ')[0] ?? '0');
  return Math.floor(seconds * CLOCK_TICKS);
}

/** Recorded before bwrap is spawned: any init it makes starts after this instant, in this boot. */
function writeIntent(runDir: string): void {
  rmSync(join(runDir, INFO), { force: true });
  atomicWriteFile(join(runDir, INTENT), JSON.stringify({ bootId: bootId(), afterTicks: uptimeTicks() - CLOCK_TICKS }), 0o600);
}

function clearIntent(runDir: string): void {
  rmSync(join(runDir, INTENT), { force: true });
}

/**
 * An init that a start cut short (its caller killed between spawning bwrap and recording
 * the init) left running untracked: the pid bwrap reported, while that process is a bwrap
 * started after the intent, in this boot. Undefined when there is none.
 */
function strayInit(runDir: string): { pid: number; startTime: number } | undefined {
  let intent: { bootId?: string; afterTicks?: number };
  try {
    intent = JSON.parse(readFileSync(join(runDir, INTENT), 'utf8')) as typeof intent;
  } catch {
    return undefined;
  }
  const pid = readInfoPid(runDir);
  if (pid === undefined || intent.bootId !== bootId()) return undefined;
  if (readRecord(runDir)?.pid === pid && liveRecord(runDir) !== undefined) return undefined; // recorded after all: not a stray
  const stat = readProcStat(pid);
  if (stat === undefined || stat.state === 'Z' || stat.state === 'X' || stat.startTime < (intent.afterTicks ?? 0)) return undefined;
  let comm = '';
  try {
    comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return undefined;
  }
  return comm === 'bwrap' ? { pid, startTime: stat.startTime } : undefined;
}

/** Kills an init left untracked by a start cut short (see `strayInit`) and forgets the intent; true when there was one. */
export async function reapStray(runDir: string): Promise<boolean> {
  const stray = strayInit(runDir);
  if (stray !== undefined) {
    killQuiet(stray.pid);
    await waitGone(stray.pid, stray.startTime, STOP_TIMEOUT_MS);
  }
  clearIntent(runDir);
  return stray !== undefined;
}

/**
 * Kills bwrap processes stuck half-way with their own copy of a mount namespace that still
 * holds the filesystem mounted at `point` (they pin it: it could not be unmounted). A
 * running box's init is never among them: its root is its box, not the host's.
 */
export async function killStuckSandboxes(point: string): Promise<number> {
  const source = mountAt(point)?.source;
  if (source === undefined) return 0;
  const ownNs = statSync('/proc/self/ns/mnt').ino;
  const hostRoot = statRoot('/');
  const victims: Array<{ pid: number; startTime: number }> = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    try {
      if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== 'bwrap') continue;
      if (statSync(`/proc/${pid}/ns/mnt`).ino === ownNs || !sameFile(processRoot(pid), hostRoot)) continue;
      if (!readFileSync(`/proc/${pid}/mountinfo`, 'utf8').includes(` ${source} `)) continue;
    } catch {
      continue; // gone meanwhile
    }
    const stat = readProcStat(pid);
    if (stat !== undefined) victims.push({ pid, startTime: stat.startTime });
  }
  for (const v of victims) killQuiet(v.pid);
  for (const v of victims) await waitGone(v.pid, v.startTime, STOP_TIMEOUT_MS).catch(() => undefined);
  return victims.length;
}

/**
 * Kills every process whose root directory is `root` (a box root about to be deleted): the
 * last resort after `stopBox`, for processes no record names. Returns how many it killed.
 */
export async function killProcessesRootedAt(root: string): Promise<number> {
  const target = statRoot(root);
  if (target === undefined) return 0;
  const victims: Array<{ pid: number; startTime: number }> = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid || !sameFile(processRoot(pid), target)) continue;
    const stat = readProcStat(pid);
    if (stat !== undefined) victims.push({ pid, startTime: stat.startTime });
  }
  for (const v of victims) killQuiet(v.pid);
  for (const v of victims) await waitGone(v.pid, v.startTime, STOP_TIMEOUT_MS).catch(() => undefined);
  return victims.length;
}

function readKeeperName(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/root/proc/2/comm`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/**
 * Starts the box: an init process in new PID, mount, UTS and IPC namespaces with `root`
 * as its root, detached so it outlives the caller. Idempotent: when the box already runs
 * on this root, returns its init. Throws `ZOMG_BOX_RUNNING` when an init of this box
 * still runs on another root (stop it first). Modifies the root only to write
 * /etc/boxes-env (+ shell hooks), mountpoints and an empty /etc/resolv.conf when missing.
 *
 * @returns the init's pid on the host (PID 1 of the box's namespace).
 */
export async function startBox(spec: BoxSpec, options: { timeoutMs?: number } = {}): Promise<{ pid: number }> {
  mkdirSync(spec.runDir, { recursive: true, mode: 0o700 });
  return new LockManager(spec.runDir).with(
    LOCK,
    async () => {
      const rootId = statRoot(spec.root);
      if (rootId === undefined) {
        throw new UnprocessableError('ZOMG_BOX_ROOT_MISSING', 'the root directory of the box is missing');
      }
      const record = liveRecord(spec.runDir);
      if (record !== undefined) {
        if (sameFile(processRoot(record.pid), rootId)) return { pid: record.pid };
        throw new ConflictError('ZOMG_BOX_RUNNING', 'the box is running on another root directory', { hint: 'stop the box first' });
      }
      removeRecord(spec.runDir);
      // A start cut short may have left an init nobody recorded: never run a second one.
      await reapStray(spec.runDir);
      await stopNetwork(spec.runDir); // one left behind by a box that died on its own
      const started = await launch(spec, rootId, options.timeoutMs ?? START_TIMEOUT_MS);
      return { pid: started.pid };
    },
    { what: 'the box' },
  );
}

// ---------------------------------------------------------------------------------------
// Stop

async function waitGone(pid: number, startTime: number | undefined, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const stat = readProcStat(pid);
    // A zombie init means the kernel has already killed and reaped everything in its
    // PID namespace (the namespace's init exits last).
    if (stat === undefined || stat.startTime !== startTime || stat.state === 'Z' || stat.state === 'X') return;
    if (Date.now() > deadline) throw new ToolError('ZOMG_BOX_STOP_TIMEOUT', `the box's processes did not exit within ${timeoutMs} ms`);
    await sleep(5);
  }
}

/**
 * Stops the box: SIGKILL to its init (PID 1 of the box's PID namespace), which makes the
 * kernel kill every process in the box; returns once they are all gone. Nothing is
 * unmounted on the host because nothing was mounted there; the box's mounts vanish with
 * its mount namespace.
 */
export async function stopBox(runDir: string, options: { timeoutMs?: number } = {}): Promise<'stopped' | 'not_running'> {
  if (readRecord(runDir) === undefined && !existsSync(join(runDir, INTENT))) {
    await stopNetwork(runDir); // one left behind by a box that died on its own
    return 'not_running';
  }
  return new LockManager(runDir).with(
    LOCK,
    async () => {
      const stray = await reapStray(runDir);
      const record = readRecord(runDir);
      // Only a verified init is killed: a stale record may name a pid reused by anything.
      const current = liveRecord(runDir);
      if (current !== undefined) {
        killQuiet(current.pid);
        await waitGone(current.pid, current.startTime, options.timeoutMs ?? STOP_TIMEOUT_MS);
      }
      // The box's network helper and cgroup go with it (also when it died on its own, or a
      // start cut short left it).
      await stopNetwork(runDir);
      if (record?.enter !== undefined || stray) await removeCgroup(record?.id ?? basename(runDir)).catch(() => undefined);
      removeRecord(runDir);
      return current !== undefined || stray ? 'stopped' : 'not_running';
    },
    { what: 'the box' },
  );
}

// ---------------------------------------------------------------------------------------
// Exec

function notRunning(): ConflictError {
  return new ConflictError('ZOMG_BOX_NOT_RUNNING', 'the box is not running', { hint: 'start it with `zomg resume <box>`' });
}

/** The program, argv and environment for one exec (all checks done before anything runs). */
function prepareExec(
  runDir: string,
  opts: ExecOptions,
  argvOf: (command: string[]) => string[],
): { bin: string; args: string[]; env: Record<string, string>; missing?: { box: string; command: string } } {
  if (opts.command.length === 0) {
    throw new InvalidArgumentError('no command given', { code: 'ZOMG_NO_COMMAND', hint: 'put the command after `--`' });
  }
  const record = liveRecord(runDir);
  if (record === undefined) throw notRunning();
  // The box as its processes see it, mounts included: /proc/<init>/root.
  const boxRoot = `/proc/${record.pid}/root`;

  let identity: ExecIdentity = { home: '/root', user: 'root', shell: '/bin/sh' };
  const credentials: string[] = [];
  const ids: string[] = [];
  if (opts.user !== undefined && opts.user !== 'root') {
    const user = lookupUser(boxRoot, opts.user);
    // Project users share /home/<user> (the /home volume), whatever passwd says.
    const home = user.uid === 0 ? user.passwdHome : `/home/${user.name}`;
    if (user.uid !== 0) ensureHome(boxRoot, user, home);
    identity = { home, user: user.name, shell: user.shell };
    credentials.push('--setuid', String(user.uid), '--setgid', String(user.gid));
    ids.push('--uid', String(user.uid), '--gid', String(user.gid));
  }

  let cwd: string;
  if (opts.cwd !== undefined) {
    cwd = posix.isAbsolute(opts.cwd) ? opts.cwd : posix.join(identity.home, opts.cwd);
    if (!resolveInRoot(boxRoot, cwd).stat?.isDirectory()) {
      throw new InvalidArgumentError(`no such directory in the box: ${opts.cwd}`, { code: 'ZOMG_NO_SUCH_DIRECTORY' });
    }
  } else {
    cwd = resolveInRoot(boxRoot, identity.home).stat?.isDirectory() ? identity.home : '/';
  }

  const command = opts.shell ? ['/bin/sh', '-c', opts.command.join(' ')] : opts.command;
  const env = execEnvironment(record.env, identity, opts.env, record.path);
  // With --sh the shell says it in its own words; without, nsenter would (naming itself).
  const missing = opts.shell || commandExists(boxRoot, command[0] as string, env.PATH ?? '', cwd) ? undefined : { box: record.env.BOX_NAME ?? record.hostname, command: command[0] as string };
  const enter = record.enter;
  if (enter !== undefined) {
    const args = [
      '--target',
      String(record.pid),
      ...(enter.netns ? ['--net'] : []),
      ...(enter.cgroupns ? ['--cgroupns'] : []),
      ...enter.cgroups.flatMap((c) => ['--cgroup', c]),
      '--wd',
      cwd,
      ...ids,
      ...(enter.privileged ? [] : ['--caps', capMaskHex(), '--nnp', '--seccomp', join(runDir, SECCOMP)]),
      '--',
      ...argvOf(command),
    ];
    return { bin: enter.helper, args, env, ...(missing ? { missing } : {}) };
  }
  // A box started by an older zomg (privileged, no helper recorded): nsenter as then.
  const args = [
    '--target',
    String(record.pid),
    '--pid',
    '--mount',
    '--uts',
    '--ipc',
    '--root',
    `--wdns=${cwd}`,
    ...credentials,
    '--',
    ...argvOf(command),
  ];
  return { bin: tool('nsenter', 'util-linux'), args, env, ...(missing ? { missing } : {}) };
}

function exitCode(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  return 128 + (signal ? (osConstants.signals[signal] ?? 0) : 0);
}

function signalQuiet(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch (err) {
    if (!isErrno(err, 'ESRCH')) throw err;
  }
}

/**
 * Runs a command in the running box and returns at once with a handle. Its stdin, stdout
 * and stderr are whatever `opts` says ('pipe' by default): data flows as produced. Throws
 * (synchronously) `ZOMG_BOX_NOT_RUNNING`, `ZOMG_UNKNOWN_USER`, `ZOMG_NO_SUCH_DIRECTORY`.
 */
export function execInBox(runDir: string, opts: ExecOptions): ExecHandle {
  const { bin, args, env, missing } = prepareExec(runDir, opts, (command) => command);
  if (missing) return commandNotFound(missing.box, missing.command, { stdout: opts.stdout ?? 'pipe', stderr: opts.stderr ?? 'pipe' });
  // Not `system/run`: an exec is a live handle with streams handed to the caller, and its
  // environment is the box's (no LC_ALL=C).
  const child = childProcess().spawn(bin, args, {
    env,
    stdio: [opts.stdin ?? 'pipe', opts.stdout ?? 'pipe', opts.stderr ?? 'pipe'],
  });
  const kill = (signal: NodeJS.Signals = 'SIGTERM'): void => {
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
    // The entry program forwards no signal: send it to the command, its only child.
    const inBox = childPids(child.pid);
    for (const pid of inBox) signalQuiet(pid, signal);
    if (inBox.length === 0) child.kill(signal);
  };
  const exited = new Promise<number>((resolve, reject) => {
    child.on('error', (err) => {
      reject(isErrno(err, 'ENOENT') ? new ToolError('ZOMG_TOOL_MISSING', 'the exec helper is missing', { cause: err, hint: 'restart the box (`zomg stop` then `zomg resume`)' }) : err);
    });
    child.on('close', (code, signal) => resolve(exitCode(code, signal)));
  });
  if (opts.signal) {
    const onAbort = (): void => kill('SIGKILL');
    if (opts.signal.aborted) onAbort();
    else {
      opts.signal.addEventListener('abort', onAbort, { once: true });
      void exited.finally(() => opts.signal?.removeEventListener('abort', onAbort)).catch(() => undefined);
    }
  }
  child.stdin?.on('error', () => {
    /* the command may exit without reading its input; its exit code says what happened */
  });
  return { pid: child.pid ?? -1, stdin: child.stdin, stdout: child.stdout, stderr: child.stderr, exited, kill };
}

/*
 * `--bg`: the job is the grandchild of the shell nsenter starts. That shell exits at once,
 * so nsenter returns and the job is adopted (and later reaped) by the box's PID 1; it lives
 * wholly inside the box and dies with it. The job's shell prints its own pid, which stays
 * the job's pid across `exec`, then redirects into /tmp/boxes/exec/<pid>.log. Needs
 * /bin/sh in the rootfs (any base has one).
 */
const BG_SCRIPT = [
  `mkdir -p -m 1777 /tmp/boxes ${BG_LOG_DIR} 2>/dev/null`,
  `/bin/sh -c 'echo $$; exec "$@" </dev/null >"${BG_LOG_DIR}/$$.log" 2>&1' zomg-bg "$@" &`,
].join('\n');

/**
 * Starts a command detached inside the running box (`--bg`) and returns its pid inside
 * the box's PID namespace once it runs. Its output goes to `/tmp/boxes/exec/<pid>.log` in
 * the box; a command that cannot be run leaves its error there (the pid is still
 * returned, as with any detached job).
 */
export async function execBackground(runDir: string, opts: Omit<ExecOptions, 'stdin' | 'stdout' | 'stderr' | 'signal'>): Promise<BackgroundExec> {
  const { bin, args, env, missing } = prepareExec(runDir, opts, (command) => ['/bin/sh', '-c', BG_SCRIPT, 'zomg-bg', ...command]);
  if (missing) throw new NotFoundError('ZOMG_COMMAND_NOT_FOUND', commandNotFoundMessage(missing.box, missing.command).replace(/^zomg: /, ''), { hint: `check the name, or run it through a shell with --sh` });
  // Not `system/run`: the job must get the box's environment untouched (run adds LC_ALL=C),
  // and `detached` puts it in a session of its own, away from the caller's terminal signals.
  const child = childProcess().spawn(bin, args, { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve, reject) => {
    let out = '';
    let err = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
    child.on('error', reject);
    child.on('close', (c, signal) => resolve({ code: exitCode(c, signal), stdout: out, stderr: err }));
  });
  const pid = Number.parseInt(stdout, 10);
  if (code !== 0 || !Number.isInteger(pid) || pid <= 0) {
    // The entry program's stderr and exit code go with it: the engine tells its failures apart (engine/enter-guard.ts).
    throw new ToolError('ZOMG_EXEC_FAILED', `could not start the background command in the box (exit ${code}): ${stderr.trim()}`, { cause: new CommandError(bin, args, code, stderr) });
  }
  return { pid, logPath: `${BG_LOG_DIR}/${pid}.log` };
}

// ---------------------------------------------------------------------------------------
// What terminals, files, processes and logs need (runtime/pty.ts, runtime/processes.ts)

/**
 * The program, argv and environment `execInBox` runs for `opts` (zomg-enter …), for callers
 * that connect the command to something else than pipes (a pty). Throws as `execInBox`.
 */
export function execCommand(runDir: string, opts: ExecOptions): { file: string; args: string[]; env: Record<string, string> } {
  const { bin, args, env } = prepareExec(runDir, opts, (command) => command);
  return { file: bin, args, env };
}

/**
 * The running box as its processes see it, mounts included: `/proc/<init>/root` (a path
 * to resolve box paths in with `resolveInRoot`, never to join blindly), and the init's host
 * pid. Undefined when the box is not running.
 */
export function boxView(runDir: string): { root: string; initPid: number } | undefined {
  const record = liveRecord(runDir);
  return record === undefined ? undefined : { root: `/proc/${record.pid}/root`, initPid: record.pid };
}
