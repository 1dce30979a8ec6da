/**
 * The default profile's seccomp filter, as a classic-BPF program (what bwrap's `--seccomp
 * FD` and zomg-enter load with PR_SET_SECCOMP): docker's default policy expressed as a
 * deny list. Every listed system call returns EPERM; `clone` with a namespace flag returns
 * EPERM; `clone3` returns ENOSYS (its flags live in memory a filter cannot read, so libc
 * falls back to `clone`, as under docker); x32 calls and any other architecture return
 * EPERM. Everything else is allowed: capabilities (see profile.ts) do the rest.
 *
 * x86_64 only (the architecture zomg bases are built for); the numbers are the kernel's
 * (asm/unistd_64.h), checked against the system headers in tests/unit/seccomp.test.ts.
 */

import { UnsupportedError } from '../core/errors.js';

const AUDIT_ARCH_X86_64 = 0xc000003e;
const X32_SYSCALL_BIT = 0x40000000;

// BPF opcodes (linux/bpf_common.h)
const LD_W_ABS = 0x20;
const JEQ_K = 0x15;
const JGE_K = 0x35;
const JSET_K = 0x45;
const RET_K = 0x06;

const RET_ALLOW = 0x7fff0000;
const RET_ERRNO = 0x00050000;
const EPERM = 1;
const ENOSYS = 38;

// offsets in struct seccomp_data
const OFF_NR = 0;
const OFF_ARCH = 4;
const OFF_ARG0_LOW = 16;

/** CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET */
const CLONE_NS_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000;

export const SYSCALL_CLONE = 56;
export const SYSCALL_CLONE3 = 435;

/** The system calls a default box may not make, with their x86_64 numbers. */
export const DENIED_SYSCALLS: Readonly<Record<string, number>> = {
  // mounts, old and new API, and switching roots
  mount: 165,
  umount2: 166,
  pivot_root: 155,
  fsopen: 430,
  fsconfig: 431,
  fsmount: 432,
  fspick: 433,
  move_mount: 429,
  open_tree: 428,
  mount_setattr: 442,
  // namespaces
  unshare: 272,
  setns: 308,
  // kernel modules and kexec
  init_module: 175,
  finit_module: 313,
  delete_module: 176,
  create_module: 174,
  get_kernel_syms: 177,
  query_module: 178,
  kexec_load: 246,
  kexec_file_load: 320,
  // kernel interfaces a container has no business with
  bpf: 321,
  perf_event_open: 298,
  fanotify_init: 300,
  userfaultfd: 323,
  io_uring_setup: 425,
  io_uring_enter: 426,
  io_uring_register: 427,
  keyctl: 250,
  add_key: 248,
  request_key: 249,
  lookup_dcookie: 212,
  // the machine: swap, reboot, kernel log, clocks, accounting, quotas, raw I/O
  swapon: 167,
  swapoff: 168,
  reboot: 169,
  syslog: 103,
  settimeofday: 164,
  clock_settime: 227,
  clock_adjtime: 305,
  adjtimex: 159,
  acct: 163,
  quotactl: 179,
  quotactl_fd: 443,
  iopl: 172,
  ioperm: 173,
  vhangup: 153,
  sethostname: 170,
  setdomainname: 171,
  nfsservctl: 180,
  // file handles bypass path-based checks (the "shocker" escape)
  open_by_handle_at: 304,
  name_to_handle_at: 303,
  // other processes' memory and files (docker gates these on CAP_SYS_PTRACE)
  process_vm_readv: 310,
  process_vm_writev: 311,
  kcmp: 312,
  pidfd_getfd: 438,
  // obsolete
  _sysctl: 156,
  uselib: 134,
  ustat: 136,
  sysfs: 139,
};

interface Insn {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

/**
 * The filter as `struct sock_filter[]` bytes (8 bytes per instruction, host byte order:
 * little-endian). On a host that is not x86_64 the filter would refuse every call, so the
 * default profile is refused there with a clear error instead.
 */
export function seccompFilter(): Buffer {
  if (process.arch !== 'x64') {
    throw new UnsupportedError('ZOMG_PROFILE_UNSUPPORTED', `the default box profile's seccomp filter is built for x86_64, not ${process.arch}`, {
      hint: 'create the box with --privileged on this host',
    });
  }
  const denied = Object.values(DENIED_SYSCALLS);
  // Layout (jumps only go forward):
  //   0 ld arch; 1 jeq x86_64 ? next : DENY; 2 ld nr; 3 jge x32 ? DENY : next;
  //   4 jeq clone ? CLONE : next; 5 jeq clone3 ? NOSYS : next; 6.. jeq denied ? DENY : next;
  //   ALLOW: ret allow; CLONE: ld arg0; jset ns ? DENY : next; ret allow; DENY; NOSYS
  const firstDenied = 6;
  const allow = firstDenied + denied.length;
  const clone = allow + 1;
  const deny = clone + 3;
  const nosys = deny + 1;
  const to = (from: number, target: number): number => {
    const off = target - from - 1;
    if (off < 0 || off > 255) throw new Error('seccomp jump out of range');
    return off;
  };
  const prog: Insn[] = [
    { code: LD_W_ABS, jt: 0, jf: 0, k: OFF_ARCH },
    { code: JEQ_K, jt: 0, jf: to(1, deny), k: AUDIT_ARCH_X86_64 },
    { code: LD_W_ABS, jt: 0, jf: 0, k: OFF_NR },
    { code: JGE_K, jt: to(3, deny), jf: 0, k: X32_SYSCALL_BIT },
    { code: JEQ_K, jt: to(4, clone), jf: 0, k: SYSCALL_CLONE },
    { code: JEQ_K, jt: to(5, nosys), jf: 0, k: SYSCALL_CLONE3 },
    ...denied.map((nr, i) => ({ code: JEQ_K, jt: to(firstDenied + i, deny), jf: 0, k: nr })),
    { code: RET_K, jt: 0, jf: 0, k: RET_ALLOW },
    { code: LD_W_ABS, jt: 0, jf: 0, k: OFF_ARG0_LOW },
    { code: JSET_K, jt: to(clone + 1, deny), jf: 0, k: CLONE_NS_FLAGS },
    { code: RET_K, jt: 0, jf: 0, k: RET_ALLOW },
    { code: RET_K, jt: 0, jf: 0, k: RET_ERRNO | EPERM },
    { code: RET_K, jt: 0, jf: 0, k: RET_ERRNO | ENOSYS },
  ];
  if (prog.length !== nosys + 1) throw new Error('seccomp layout mismatch');
  const buf = Buffer.alloc(prog.length * 8);
  prog.forEach((insn, i) => {
    buf.writeUInt16LE(insn.code, i * 8);
    buf.writeUInt8(insn.jt, i * 8 + 2);
    buf.writeUInt8(insn.jf, i * 8 + 3);
    buf.writeUInt32LE(insn.k >>> 0, i * 8 + 4);
  });
  return buf;
}
