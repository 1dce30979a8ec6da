/**
 * zomg-enter: the small program every exec goes through (and that starts a box's init in
 * its cgroup). Why a compiled helper and not `nsenter` + `setpriv`: a process that enters
 * a box from the host carries the host's full capability set, no seccomp filter and no
 * no_new_privs. The filter has to be loaded after `setns()` (it forbids setns) and before
 * the command runs, in the same process, and neither nsenter nor util-linux 2.38's setpriv
 * can load one. zomg-enter does, in order: join the box's cgroups (host paths) → read the
 * filter → open the init's namespaces and root → setns (ipc, uts, net, cgroup, pid, mnt) →
 * chroot → fork (the PID namespace applies to children) → in the child: drop the bounding
 * set to the profile, setgroups/setgid/setuid, capset, PR_SET_NO_NEW_PRIVS, the filter,
 * execvp. The parent waits and exits with the child's status (or dies of its signal), as
 * nsenter does, so callers see the command's exit code.
 *
 * It is compiled with the host's C compiler on first use (about 0.2 s) into
 * /run/zomg/libexec/zomg-enter-<hash of the source> and reused; /run is per boot.
 */
import { nodeCrypto } from '../system/builtins.js';
import { accessSync, constants, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ToolError } from '../core/errors.js';
import { run } from '../system/run.js';

const SOURCE = String.raw`
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

static void die(const char *what) {
  fprintf(stderr, "zomg-enter: %s: %s\n", what, strerror(errno));
  exit(125);
}

static void usage(void) {
  fprintf(stderr, "usage: zomg-enter [--target PID [--net] [--cgroupns] [--wd DIR]] [--cgroup PROCS]... [--uid N --gid N] [--caps HEX] [--nnp] [--seccomp FILE] -- CMD...\n");
  exit(125);
}

int main(int argc, char **argv) {
  int target = 0, net = 0, cgroupns = 0, nnp = 0, dropcaps = 0;
  unsigned long long caps = 0;
  long uid = -1, gid = -1;
  const char *wd = "/", *filter_path = NULL;
  const char *cgroups[16];
  int ncgroups = 0, i;
  for (i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--")) { i++; break; }
    else if (!strcmp(a, "--net")) net = 1;
    else if (!strcmp(a, "--cgroupns")) cgroupns = 1;
    else if (!strcmp(a, "--nnp")) nnp = 1;
    else if (i + 1 >= argc) usage();
    else if (!strcmp(a, "--target")) target = atoi(argv[++i]);
    else if (!strcmp(a, "--wd")) wd = argv[++i];
    else if (!strcmp(a, "--uid")) uid = strtol(argv[++i], NULL, 10);
    else if (!strcmp(a, "--gid")) gid = strtol(argv[++i], NULL, 10);
    else if (!strcmp(a, "--caps")) { dropcaps = 1; caps = strtoull(argv[++i], NULL, 16); }
    else if (!strcmp(a, "--seccomp")) filter_path = argv[++i];
    else if (!strcmp(a, "--cgroup") && ncgroups < 16) cgroups[ncgroups++] = argv[++i];
    else usage();
  }
  if (i >= argc) usage();

  for (int c = 0; c < ncgroups; c++) {
    int fd = open(cgroups[c], O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "0", 1) != 1) die("joining the box's cgroup");
    close(fd);
  }

  struct sock_fprog prog = {0, NULL};
  if (filter_path) {
    int fd = open(filter_path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || st.st_size <= 0 || st.st_size % 8 != 0 || st.st_size > 65536) die("reading the seccomp filter");
    prog.filter = malloc(st.st_size);
    if (!prog.filter || read(fd, prog.filter, st.st_size) != st.st_size) die("reading the seccomp filter");
    prog.len = st.st_size / 8;
    close(fd);
  }

  int last_cap = 40;
  {
    FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "r");
    if (f) { if (fscanf(f, "%d", &last_cap) != 1) last_cap = 40; fclose(f); }
  }

  if (target > 0) {
    const char *names[] = {"ipc", "uts", net ? "net" : NULL, cgroupns ? "cgroup" : NULL, "pid", "mnt"};
    int fds[6], n = sizeof(names) / sizeof(names[0]);
    char path[64];
    for (int k = 0; k < n; k++) {
      fds[k] = -1;
      if (!names[k]) continue;
      snprintf(path, sizeof path, "/proc/%d/ns/%s", target, names[k]);
      fds[k] = open(path, O_RDONLY | O_CLOEXEC);
      if (fds[k] < 0) die("opening the box's namespaces");
    }
    snprintf(path, sizeof path, "/proc/%d/root", target);
    int root = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) die("opening the box's root");
    for (int k = 0; k < n; k++) {
      if (fds[k] < 0) continue;
      if (setns(fds[k], 0) < 0) die("entering the box's namespaces");
      close(fds[k]);
    }
    if (fchdir(root) < 0 || chroot(".") < 0) die("entering the box's root");
    close(root);
    if (chdir(wd) < 0) die("changing to the working directory");

    pid_t child = fork();
    if (child < 0) die("fork");
    if (child > 0) {
      int status;
      while (waitpid(child, &status, 0) < 0) if (errno != EINTR) die("waitpid");
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      int sig = WTERMSIG(status);
      signal(sig, SIG_DFL);
      kill(getpid(), sig);
      return 128 + sig;
    }
  }

  if (dropcaps) {
    for (int c = 0; c <= last_cap; c++) {
      if (c < 64 && (caps & (1ULL << c))) continue;
      if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL) die("dropping capabilities");
    }
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  }
  if (gid >= 0) {
    if (setgroups(0, NULL) < 0 || setgid((gid_t)gid) < 0) die("setgid");
  }
  if (uid >= 0 && setuid((uid_t)uid) < 0) die("setuid");
  if (dropcaps) {
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    if (uid <= 0) {
      data[0].effective = data[0].permitted = (unsigned)(caps & 0xffffffffULL);
      data[1].effective = data[1].permitted = (unsigned)(caps >> 32);
    }
    if (syscall(SYS_capset, &hdr, data) < 0) die("setting capabilities");
  }
  if (nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("no_new_privs");
  if (prog.filter && prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0) die("loading the seccomp filter");

  execvp(argv[i], argv + i);
  int err = errno;
  fprintf(stderr, "%s: %s\n", argv[i], strerror(err));
  return err == ENOENT ? 127 : 126;
}
`;

const LIBEXEC = '/run/zomg/libexec';
let built: string | undefined;

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The path of the zomg-enter binary, compiled on first use. */
export async function enterHelper(): Promise<string> {
  if (built !== undefined && executable(built)) return built;
  const hash = nodeCrypto().createHash('sha256').update(SOURCE).digest('hex').slice(0, 16);
  const path = join(LIBEXEC, `zomg-enter-${hash}`);
  if (!executable(path)) {
    mkdirSync(LIBEXEC, { recursive: true, mode: 0o700 });
    const tmp = `${path}.${process.pid}.tmp`;
    const src = `${tmp}.c`;
    writeFileSync(src, SOURCE, { mode: 0o600 });
    try {
      await run('cc', ['-O2', '-Wall', '-o', tmp, src], { timeoutMs: 60_000 });
      renameSync(tmp, path); // atomic: concurrent first uses each build, the last rename wins
    } catch (err) {
      rmSync(tmp, { force: true });
      throw new ToolError('ZOMG_TOOL_MISSING', 'could not build zomg-enter, the helper that runs commands in a box', {
        cause: err,
        hint: 'a C compiler (`cc`, e.g. the gcc package) is needed once per boot to build it',
      });
    } finally {
      rmSync(src, { force: true });
    }
  }
  built = path;
  return path;
}
