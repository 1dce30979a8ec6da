/**
 * The processes of a running box and the logs of its `--bg` execs, read from the host
 * through the box's own view (`/proc/<init>/root`, runtime/sandbox.ts `boxView`): the box's
 * /proc (its PID namespace: pids as `ps` in the box shows them), its /etc/passwd and its
 * /tmp (a tmpfs that exists only in the box's mount namespace). Nothing runs in the box, so
 * this works in a box without `ps` (busybox or not) and costs no exec.
 */
import { closeSync, constants, fstatSync, openSync, readdirSync, readFileSync, readSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BoxProcess, ReadLogsOptions } from '../core/console-protocol.js';
import { ConflictError, NotFoundError } from '../core/errors.js';
import { isErrno } from '../system/fs.js';
import { resolveInRoot } from '../system/rootpath.js';
import { boxView } from './sandbox.js';

/** Clock ticks per second of /proc/<pid>/stat times: USER_HZ, 100 on every Linux ABI node runs on. */
const CLK_TCK = 100;
const BG_LOG_DIR = '/tmp/boxes/exec';
const FOLLOW_POLL_MS = 100;

function notRunning(): ConflictError {
  return new ConflictError('ZOMG_BOX_NOT_RUNNING', 'the box is not running', { hint: 'start it with `zomg resume <box>`' });
}

function readOrUndefined(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ESRCH', 'EACCES', 'ENOTDIR')) return undefined; // the process ended meanwhile
    throw err;
  }
}

/** uid → name from the box's /etc/passwd. */
function userNames(root: string): Map<number, string> {
  const names = new Map<number, string>();
  const passwd = resolveInRoot(root, '/etc/passwd');
  if (!passwd.stat?.isFile()) return names;
  for (const line of (readOrUndefined(passwd.hostPath) ?? '').split('\n')) {
    const [name, , uid] = line.split(':');
    if (name && uid && /^\d+$/.test(uid) && !names.has(Number(uid))) names.set(Number(uid), name);
  }
  return names;
}

/**
 * Every process of the running box, by pid. Throws ConflictError `ZOMG_BOX_NOT_RUNNING`.
 * The box's init (bwrap's reaper, PID 1) is listed like any process.
 */
export function listBoxProcesses(runDir: string): BoxProcess[] {
  const view = boxView(runDir);
  if (view === undefined) throw notRunning();
  const proc = `${view.root}/proc`;
  let entries: string[];
  try {
    entries = readdirSync(proc);
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ESRCH')) throw notRunning(); // stopped meanwhile
    throw err;
  }
  const names = userNames(view.root);
  const out: BoxProcess[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readOrUndefined(`${proc}/${entry}/stat`);
    const status = readOrUndefined(`${proc}/${entry}/status`);
    const cmdline = readOrUndefined(`${proc}/${entry}/cmdline`);
    if (stat === undefined || status === undefined || cmdline === undefined) continue;
    const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1] ?? -1);
    const args = cmdline.split('\0');
    if (args[args.length - 1] === '') args.pop();
    out.push({
      pid: Number(entry),
      ppid: Number(fields[1]),
      user: names.get(uid) ?? String(uid),
      cpu_seconds: (Number(fields[11]) + Number(fields[12])) / CLK_TCK,
      command: args.length > 0 ? args.join(' ') : `[${comm}]`,
    });
  }
  return out.sort((a, b) => a.pid - b.pid);
}

/** Whether pid `pid` of the box's PID namespace exists (and is not a zombie). */
function alive(root: string, pid: number): boolean {
  const stat = readOrUndefined(`${root}/proc/${pid}/stat`);
  if (stat === undefined) return false;
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state !== 'Z' && state !== 'X';
}

/** Where reading starts for the last `lines` lines of the open file (0 for all). */
function tailStart(fd: number, size: number, lines: number | undefined): number {
  if (lines === undefined) return 0;
  if (lines <= 0) return size;
  const chunk = Buffer.alloc(64 * 1024);
  let pos = size;
  let newlines = 0;
  // A final newline ends the last line; it does not start another one.
  let skipLast = true;
  while (pos > 0) {
    const len = Math.min(chunk.length, pos);
    pos -= len;
    readSync(fd, chunk, 0, len, pos);
    for (let i = len - 1; i >= 0; i--) {
      if (chunk[i] !== 0x0a) {
        skipLast = false;
        continue;
      }
      if (skipLast) {
        skipLast = false;
        continue;
      }
      if (++newlines === lines) return pos + i + 1;
    }
  }
  return 0;
}

function copyRange(fd: number, from: number, to: number, out: Writable): number {
  const buf = Buffer.alloc(256 * 1024);
  let pos = from;
  while (pos < to) {
    const n = readSync(fd, buf, 0, Math.min(buf.length, to - pos), pos);
    if (n === 0) break;
    out.write(Buffer.from(buf.subarray(0, n)));
    pos += n;
  }
  return pos;
}

/**
 * Writes the log of the `--bg` exec with box pid `pid` (`/tmp/boxes/exec/<pid>.log` in the
 * box) to `out`: all of it, or its last `lines` lines; with `follow`, then everything it
 * gains until the process ends (or the box stops, or `signal` aborts). Does not end `out`.
 *
 * Throws ConflictError `ZOMG_BOX_NOT_RUNNING` (the log lives in the box's /tmp, gone when it
 * stops), NotFoundError `ZOMG_NOT_A_BACKGROUND_EXEC` when the pid runs but has no log, and
 * `ZOMG_PROCESS_NOT_FOUND` when there is neither.
 */
export async function readBoxLog(runDir: string, pid: number, out: Writable, opts: ReadLogsOptions = {}): Promise<void> {
  const view = boxView(runDir);
  if (view === undefined) throw notRunning();
  const log = resolveInRoot(view.root, `${BG_LOG_DIR}/${pid}.log`);
  if (!log.stat?.isFile()) {
    if (alive(view.root, pid)) {
      throw new NotFoundError('ZOMG_NOT_A_BACKGROUND_EXEC', `process ${pid} in the box is not a background exec: it has no log`, {
        hint: 'logs exist for commands started with `zomg exec --bg`',
      });
    }
    throw new NotFoundError('ZOMG_PROCESS_NOT_FOUND', `no background exec with pid ${pid} in the box`, {
      hint: 'run `zomg ps <box>` to see its processes; logs exist for commands started with `zomg exec --bg`',
    });
  }
  let fd: number;
  try {
    fd = openSync(log.hostPath, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ELOOP')) throw new NotFoundError('ZOMG_PROCESS_NOT_FOUND', `no background exec with pid ${pid} in the box`);
    throw err;
  }
  try {
    let pos = tailStart(fd, fstatSync(fd).size, opts.lines);
    pos = copyRange(fd, pos, fstatSync(fd).size, out);
    if (!opts.follow) return;
    for (;;) {
      if (opts.signal?.aborted) return;
      const running = alive(view.root, pid);
      pos = copyRange(fd, pos, fstatSync(fd).size, out);
      // Read once more after the end was seen: the last lines are written before exit.
      if (!running) return;
      await sleep(FOLLOW_POLL_MS, undefined, opts.signal ? { signal: opts.signal } : {}).catch(() => undefined);
    }
  } finally {
    closeSync(fd);
  }
}
