/**
 * The default profile's seccomp filter, as a classic-BPF program (what bwrap's `--seccomp
 * FD` and zomg-enter load with PR_SET_SECCOMP): docker's default policy expressed as a
 * deny list. Every listed system call returns EPERM; `clone` with a namespace flag returns
 * EPERM; `clone3` returns ENOSYS (its flags live in memory a filter cannot read, so libc
 * falls back to `clone`, as under docker); any other architecture (x32 calls on x86_64,
 * 32-bit compat calls) returns EPERM. Everything else is allowed: capabilities (see
 * profile.ts) do the rest.
 *
 * Built for x86_64 and aarch64, each with its own syscall numbers and audit architecture
 * (checked against the system headers, and run through a BPF interpreter, in
 * tests/unit/boundary.test.ts). On any other host the default profile is refused with
 * ZOMG_PROFILE_UNSUPPORTED before anything is started: never a silently unfiltered box.
 */
import { endianness } from 'node:os';
import { UnsupportedError } from '../core/errors.js';

/** The architectures the filter is built for (Node's `process.arch` names). */
export type SeccompArch = 'x64' | 'arm64';

/** AUDIT_ARCH_* (linux/audit.h): what the kernel puts in seccomp_data.arch. */
export const AUDIT_ARCH: Readonly<Record<SeccompArch, number>> = { x64: 0xc000003e, arm64: 0xc00000b7 };
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

/** `clone` and `clone3` per architecture (clone's flags are its first argument on both). */
export const SYSCALL_CLONE: Readonly<Record<SeccompArch, number>> = { x64: 56, arm64: 220 };
export const SYSCALL_CLONE3: Readonly<Record<SeccompArch, number>> = { x64: 435, arm64: 435 };

/**
 * The system calls a default box may not make: name → [x86_64 number, aarch64 number]
 * (null where the architecture has no such call; aarch64 uses the generic table,
 * asm-generic/unistd.h).
 */
const DENIED: Readonly<Record<string, readonly [number, number | null]>> = {
  // mounts, old and new API, and switching roots
  mount: [165, 40],
  umount2: [166, 39],
  pivot_root: [155, 41],
  fsopen: [430, 430],
  fsconfig: [431, 431],
  fsmount: [432, 432],
  fspick: [433, 433],
  move_mount: [429, 429],
  open_tree: [428, 428],
  mount_setattr: [442, 442],
  // namespaces
  unshare: [272, 97],
  setns: [308, 268],
  // kernel modules and kexec
  init_module: [175, 105],
  finit_module: [313, 273],
  delete_module: [176, 106],
  create_module: [174, null],
  get_kernel_syms: [177, null],
  query_module: [178, null],
  kexec_load: [246, 104],
  kexec_file_load: [320, 294],
  // kernel interfaces a container has no business with
  bpf: [321, 280],
  perf_event_open: [298, 241],
  fanotify_init: [300, 262],
  userfaultfd: [323, 282],
  io_uring_setup: [425, 425],
  io_uring_enter: [426, 426],
  io_uring_register: [427, 427],
  keyctl: [250, 219],
  add_key: [248, 217],
  request_key: [249, 218],
  lookup_dcookie: [212, 18],
  // the machine: swap, reboot, kernel log, clocks, accounting, quotas, raw I/O
  swapon: [167, 224],
  swapoff: [168, 225],
  reboot: [169, 142],
  syslog: [103, 116],
  settimeofday: [164, 170],
  clock_settime: [227, 112],
  clock_adjtime: [305, 266],
  adjtimex: [159, 171],
  acct: [163, 89],
  quotactl: [179, 60],
  quotactl_fd: [443, 443],
  iopl: [172, null],
  ioperm: [173, null],
  vhangup: [153, 58],
  sethostname: [170, 161],
  setdomainname: [171, 162],
  nfsservctl: [180, 42],
  // file handles bypass path-based checks (the "shocker" escape)
  open_by_handle_at: [304, 265],
  name_to_handle_at: [303, 264],
  // other processes' memory and files (docker gates these on CAP_SYS_PTRACE)
  process_vm_readv: [310, 270],
  process_vm_writev: [311, 271],
  kcmp: [312, 272],
  pidfd_getfd: [438, 438],
  // obsolete
  _sysctl: [156, null],
  uselib: [134, null],
  ustat: [136, null],
  sysfs: [139, null],
};

/** The denied system calls with their numbers on `arch` (calls it lacks are left out). */
export function deniedSyscalls(arch: SeccompArch): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, [x64, arm64]] of Object.entries(DENIED)) {
    const nr = arch === 'x64' ? x64 : arm64;
    if (nr !== null) out[name] = nr;
  }
  return out;
}

/** The denied system calls with their x86_64 numbers. */
export const DENIED_SYSCALLS: Readonly<Record<string, number>> = deniedSyscalls('x64');

interface Insn {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

/**
 * The architecture of this host as the filter knows it, or ZOMG_PROFILE_UNSUPPORTED: a
 * default box cannot be given a filter here (the program would be wrong for its calls).
 */
export function seccompArch(arch: string = process.arch, byteOrder: string = endianness()): SeccompArch {
  if ((arch === 'x64' || arch === 'arm64') && byteOrder === 'LE') return arch;
  throw new UnsupportedError('ZOMG_PROFILE_UNSUPPORTED', `the default box profile's seccomp filter is built for x86_64 and aarch64, not ${arch}${byteOrder === 'LE' ? '' : ' (big-endian)'}`, {
    hint: 'create the box with --privileged on this host (it is then not a security boundary)',
  });
}

/**
 * The filter for `arch` (default: this host's, see `seccompArch`) as `struct
 * sock_filter[]` bytes: 8 bytes per instruction, little-endian (both architectures are).
 */
export function seccompFilter(arch: SeccompArch = seccompArch()): Buffer {
  const denied = Object.values(deniedSyscalls(arch));
  const x32 = arch === 'x64';
  // Layout (jumps only go forward):
  //   ld arch; jeq AUDIT_ARCH ? next : DENY; ld nr; [x86_64: jge x32 ? DENY : next;]
  //   jeq clone ? CLONE : next; jeq clone3 ? NOSYS : next; jeq denied ? DENY : next …;
  //   ALLOW: ret allow; CLONE: ld arg0; jset ns ? DENY : next; ret allow; DENY; NOSYS
  const head = x32 ? 4 : 3;
  const firstDenied = head + 2;
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
    { code: JEQ_K, jt: 0, jf: to(1, deny), k: AUDIT_ARCH[arch] },
    { code: LD_W_ABS, jt: 0, jf: 0, k: OFF_NR },
    ...(x32 ? [{ code: JGE_K, jt: to(3, deny), jf: 0, k: X32_SYSCALL_BIT }] : []),
    { code: JEQ_K, jt: to(head, clone), jf: 0, k: SYSCALL_CLONE[arch] },
    { code: JEQ_K, jt: to(head + 1, nosys), jf: 0, k: SYSCALL_CLONE3[arch] },
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
