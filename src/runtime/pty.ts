/**
 * Terminals in a running box: the same entry command as `execInBox` (zomg-enter, or
 * `nsenter` for a box started by an older zomg), started on a pseudo-terminal (node-pty:
 * forkpty, setsid and the pty as controlling terminal) instead of pipes.
 *
 * The terminal the command gets must be one of the box's own ptys: the box has its own
 * devpts instance at /dev/pts, and a host pty there is "not a tty" to `tty`, `ssh`, `sudo`
 * (ttyname finds no /dev/pts/N for it). node-pty can only open the host's /dev/ptmx, so a
 * small relay (RELAY below, python3 on the host) opens the box's `…/dev/pts/ptmx` through
 * `/proc/<init>/root`, unlocks it, makes its slave the controlling terminal of the entry
 * command and copies bytes between the two ptys, the host one in raw mode; a window size set
 * on the host pty is copied on SIGWINCH. Without python3 the command gets the host pty
 * directly (everything works but ttyname). The inner line discipline does the rest, as on
 * any terminal: Ctrl-C, Ctrl-Z and Ctrl-\ arrive as bytes and become SIGINT, SIGTSTP and
 * SIGQUIT for the terminal's foreground process group (a shell's job in the box, not the
 * shell nor the entry program); Ctrl-D is end-of-file for a reader in canonical mode; a
 * resize is TIOCSWINSZ on the master, which sends SIGWINCH to the foreground group.
 *
 * Hang-up (`close`): SIGHUP to the entry program (the session leader) and to the command,
 * then the master is closed — what the kernel does when an ssh connection drops. A box that
 * stops kills the command; the entry program then ends with the same signal and the
 * session's `exited` settles with 128+9.
 */
import type * as NodePty from '@lydell/node-pty';
import { accessSync, constants as fsConstants, statfsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { checkTerminalSize, type TerminalSession } from '../core/console-protocol.js';
import { ToolError } from '../core/errors.js';
import { isErrno } from '../system/fs.js';
import { childPids } from '../system/procfs.js';
import { resolveInRoot } from '../system/rootpath.js';
import { type ExecOptions, boxView, execCommand } from './sandbox.js';

declare const require: NodeJS.Require | undefined;

// node-pty (a native addon) loads with the first terminal, not with every CLI start. In the
// bundle the plain `require` call is bundled (evaluated only here); unbundled ESM has none.
let nodePty: typeof NodePty | undefined;
const loadPty = (): typeof NodePty =>
  (nodePty ??= (typeof require === 'function' ? require('@lydell/node-pty') : createRequire(import.meta.url)('@lydell/node-pty')) as typeof NodePty);

/**
 * The relay: argv = [box pts dir, program, args…]. ioctl numbers are the generic Linux ones
 * (TIOCSPTLCK, TIOCGPTN), the same on x86_64 and arm64. Exit code: the command's, 128+N for
 * signal N.
 */
const RELAY = `
import os, sys, fcntl, struct, signal, select, termios, tty
pts, argv = sys.argv[1], sys.argv[2:]
m = os.open(pts + '/ptmx', os.O_RDWR | os.O_NOCTTY)
fcntl.ioctl(m, 0x40045431, struct.pack('i', 0))
n = struct.unpack('I', fcntl.ioctl(m, 0x80045430, b'\\0' * 4))[0]
s = os.open('%s/%d' % (pts, n), os.O_RDWR | os.O_NOCTTY)
def size(*_):
    try: fcntl.ioctl(m, termios.TIOCSWINSZ, fcntl.ioctl(0, termios.TIOCGWINSZ, b'\\0' * 8))
    except OSError: pass
size()
pid = os.fork()
if pid == 0:
    os.close(m); os.setsid(); fcntl.ioctl(s, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2): os.dup2(s, fd)
    if s > 2: os.close(s)
    os.execvp(argv[0], argv)
os.close(s)
signal.signal(signal.SIGWINCH, size)
try: tty.setraw(0)
except termios.error: pass
def put(fd, data):
    while data: data = data[os.write(fd, data):]
fds = [0, m]
while True:
    try: r = select.select(fds, [], [])[0]
    except InterruptedError: continue
    if m in r:
        try: data = os.read(m, 65536)
        except OSError: data = b''
        if not data: break
        put(1, data)
    if 0 in r:
        data = os.read(0, 65536)
        if data: put(m, data)
        else: fds = [m]
st = os.waitpid(pid, 0)[1]
sys.exit(os.WEXITSTATUS(st) if os.WIFEXITED(st) else 128 + os.WTERMSIG(st))
`;

const DEVPTS_SUPER_MAGIC = 0x1cd1;

function hostPython(): string | undefined {
  for (const path of ['/usr/bin/python3', '/usr/local/bin/python3', '/bin/python3']) {
    try {
      accessSync(path, fsConstants.X_OK);
      return path;
    } catch {
      /* not here */
    }
  }
  return undefined;
}

/** The host path of the running box's own devpts (`/proc/<init>/root/dev/pts`), when it has one. */
function boxPts(runDir: string): string | undefined {
  const view = boxView(runDir);
  if (view === undefined) return undefined;
  const pts = resolveInRoot(view.root, '/dev/pts');
  if (!pts.stat?.isDirectory()) return undefined;
  return statfsSync(pts.hostPath).type === DEVPTS_SUPER_MAGIC ? pts.hostPath : undefined;
}

export interface PtyExecOptions extends Omit<ExecOptions, 'stdin' | 'stdout' | 'stderr'> {
  cols: number;
  rows: number;
}

function signalQuiet(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch (err) {
    if (!isErrno(err, 'ESRCH')) throw err;
  }
}

/**
 * Runs a command in the running box on a new pty of `cols`×`rows` and returns at once with
 * the session. Throws (synchronously) as `execInBox` does (`ZOMG_BOX_NOT_RUNNING`,
 * `ZOMG_UNKNOWN_USER`, `ZOMG_NO_SUCH_DIRECTORY`, `ZOMG_NO_COMMAND`) and
 * `ZOMG_INVALID_TERMINAL_SIZE`.
 */
export function execInBoxPty(runDir: string, opts: PtyExecOptions): TerminalSession {
  const size = checkTerminalSize(opts.cols, opts.rows);
  const { file, args, env } = execCommand(runDir, opts);
  const python = hostPython();
  const pts = python !== undefined ? boxPts(runDir) : undefined;
  const [program, argv] = python !== undefined && pts !== undefined ? [python, ['-c', RELAY, pts, file, ...args]] : [file, args];
  let pty;
  try {
    pty = loadPty().spawn(program, argv, { name: env.TERM ?? 'xterm-256color', cols: size.cols, rows: size.rows, cwd: '/', env, encoding: null });
  } catch (err) {
    throw new ToolError('ZOMG_PTY_FAILED', 'could not open a terminal for the command', { cause: err, hint: 'the host may be out of ptys (see /proc/sys/kernel/pty/max)' });
  }
  let done = false;
  const exited = new Promise<number>((resolve) => {
    pty.onExit(({ exitCode, signal }) => {
      done = true;
      resolve(signal ? 128 + signal : exitCode);
    });
  });
  const hangUp = (): void => {
    if (done) return;
    // The entry program forwards no signal: the command, its only child, gets it directly.
    for (const pid of childPids(pty.pid)) signalQuiet(pid, 'SIGHUP');
    signalQuiet(pty.pid, 'SIGHUP');
  };
  if (opts.signal) {
    const onAbort = (): void => hangUp();
    if (opts.signal.aborted) onAbort();
    else {
      opts.signal.addEventListener('abort', onAbort, { once: true });
      void exited.finally(() => opts.signal?.removeEventListener('abort', onAbort));
    }
  }
  return {
    onData(listener) {
      // With `encoding: null` the pty hands out Buffers (its typings say string).
      pty.onData((data: string | Buffer) => listener(typeof data === 'string' ? Buffer.from(data) : data));
    },
    write(data) {
      // Bytes go to the master untouched (its socket takes Buffers; the typings say string).
      if (!done) pty.write(data as string);
    },
    resize(cols, rows) {
      const s = checkTerminalSize(cols, rows);
      if (!done) pty.resize(s.cols, s.rows);
    },
    close: hangUp,
    exited,
  };
}
