// The seccomp profile of runc and crun sandboxes, as data: Docker's default profile (deny by
// default with EPERM, an allow list, argument filters on clone / clone3 / personality / socket)
// for the capability set bundle.ts grants, made stricter where the threat model asks (see
// docs/SECURITY.md). runsc gets none: gVisor's sentry is the syscall boundary there.
import { assert } from '../core/assert.js'

/** `linux.seccomp` of an OCI runtime spec (the fields we use). */
export interface OciSeccomp {
  defaultAction: 'SCMP_ACT_ERRNO'
  defaultErrnoRet: number
  architectures: string[]
  syscalls: OciSyscallRule[]
}

export interface OciSyscallRule {
  names: string[]
  action: 'SCMP_ACT_ALLOW' | 'SCMP_ACT_ERRNO'
  errnoRet?: number
  args?: {
    index: number
    value: number
    valueTwo?: number
    op: 'SCMP_CMP_EQ' | 'SCMP_CMP_NE' | 'SCMP_CMP_MASKED_EQ'
  }[]
}

/** A whitespace-separated list of syscall names (data kept compact and diffable). */
function names(text: string): readonly string[] {
  return text.split(/\s+/).filter(Boolean)
}

const EPERM = 1
const ENOSYS = 38

/** CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET: no new namespace. */
export const CLONE_NAMESPACE_FLAGS = 0x7e020000
const AF_VSOCK = 40

/**
 * Docker's unconditional allow list (moby profiles/seccomp/default.json), without `io_uring_*`
 * (Docker 25 dropped them too: a large, often-exploited kernel surface). Names the host's
 * libseccomp does not know are skipped by the runtimes, as Docker's are.
 */
const ALLOWED = names(`
  accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32
  clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64
  clock_nanosleep clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2
  dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait
  epoll_wait_old eventfd eventfd2 execve execveat exit exit_group faccessat faccessat2 fadvise64
  fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat fchown fchown32 fchownat fcntl
  fcntl64 fdatasync fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat fstat64 fstatat64
  fstatfs fstatfs64 fsync ftruncate ftruncate64 futex futex_time64 futex_waitv futimesat getcpu
  getcwd getdents getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32 getgroups
  getgroups32 getitimer getpeername getpgid getpgrp getpid getppid getpriority getrandom getresgid
  getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage getsid getsockname
  getsockopt get_thread_area gettid gettimeofday getuid getuid32 getxattr inotify_add_watch
  inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy io_getevents
  io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit ipc kill
  landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown lchown32 lgetxattr link
  linkat listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64 madvise
  membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall
  mmap mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64
  mq_timedsend mq_timedsend_time64 mq_unlink mremap msgctl msgget msgrcv msgsnd msync munlock
  munlockall munmap name_to_handle_at nanosleep newfstatat _newselect open openat openat2 pause
  pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll
  ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6 pselect6_time64
  pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv recv recvfrom recvmmsg
  recvmmsg_time64 recvmsg remap_file_pages removexattr rename renameat renameat2 restart_syscall
  rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend
  rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr
  sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler
  sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr
  sched_setparam sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop
  semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32 setfsuid
  setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority setregid
  setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32 setrlimit
  set_robust_list setsid setsockopt set_thread_area set_tid_address setuid setuid32 setxattr shmat
  shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4 sigprocmask sigreturn socketcall
  socketpair splice stat stat64 statfs statfs64 statx symlink symlinkat sync sync_file_range
  syncfs sysinfo tee tgkill time timer_create timer_delete timer_getoverrun timer_gettime
  timer_gettime64 timer_settime timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64
  timerfd_settime timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname unlink
  unlinkat utime utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write
  writev
`)

/**
 * Allowed by Docker only for a capability we grant: CAP_SYS_CHROOT → chroot. Docker's other
 * capability-gated rows (SYS_ADMIN: mount family, unshare, setns, clone with namespace flags,
 * bpf, perf_event_open...; SYS_MODULE, SYS_BOOT, SYS_PTRACE, SYS_TIME, SYS_NICE, SYSLOG, BPF,
 * PERFMON, DAC_READ_SEARCH...) stay out with those capabilities.
 */
const ALLOWED_FOR_OUR_CAPS: readonly string[] = ['chroot']

/** Per host architecture: the syscall architectures and Docker's arch-specific allow rows. */
const ARCHES: Record<string, { architectures: string[]; syscalls: string[] }> = {
  // Native only: no i386 or x32 entry points (Docker adds both; a 32-bit binary dies here).
  x64: { architectures: ['SCMP_ARCH_X86_64'], syscalls: ['arch_prctl', 'modify_ldt'] },
  arm64: {
    architectures: ['SCMP_ARCH_AARCH64'],
    syscalls: [
      'arm_fadvise64_64',
      'arm_sync_file_range',
      'sync_file_range2',
      'breakpoint',
      'cacheflush',
      'set_tls',
    ],
  },
}

/**
 * Syscalls a sandbox must never make, whatever the allow list says (a test checks the profile
 * allows none of them; test/runtime/seccomp.test.ts makes several from inside a sandbox). `ptrace`
 * and `process_vm_*` are here although Docker allows them on kernels ≥ 4.8: no sandbox process
 * needs to read another's memory, and ptrace has a long CVE record. Debuggers run under runsc.
 */
export const DENIED_SYSCALLS = names(`
  unshare setns clone3 keyctl add_key request_key userfaultfd perf_event_open io_uring_setup
  io_uring_enter io_uring_register kexec_load kexec_file_load init_module finit_module
  delete_module create_module bpf mount umount umount2 pivot_root move_mount fsopen fsconfig
  fsmount fspick open_tree mount_setattr ptrace process_vm_readv process_vm_writev kcmp
  pidfd_getfd process_madvise swapon swapoff reboot sethostname setdomainname syslog acct quotactl
  quotactl_fd open_by_handle_at lookup_dcookie fanotify_init iopl ioperm settimeofday stime
  clock_settime clock_settime64 vhangup nfsservctl uselib ustat sysfs _sysctl
`)

/** The profile for runc and crun on the host's architecture (`process.arch`). */
export function sandboxSeccomp(arch: string = process.arch): OciSeccomp {
  const a = ARCHES[arch]
  if (!a) throw new Error(`no seccomp profile for architecture ${arch}`)
  const profile: OciSeccomp = {
    defaultAction: 'SCMP_ACT_ERRNO',
    defaultErrnoRet: EPERM,
    architectures: a.architectures,
    syscalls: [
      { names: [...ALLOWED, ...ALLOWED_FOR_OUR_CAPS, ...a.syscalls], action: 'SCMP_ACT_ALLOW' },
      // Processes and threads, never a new namespace (CLONE_NEWUSER included).
      {
        names: ['clone'],
        action: 'SCMP_ACT_ALLOW',
        args: [{ index: 0, value: CLONE_NAMESPACE_FLAGS, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }],
      },
      // clone3 passes its flags in memory, where seccomp cannot look: ENOSYS makes glibc fall
      // back to clone, whose flags it can check (Docker does the same).
      { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS },
      // Every socket family but AF_VSOCK (a path to the hypervisor's host).
      {
        names: ['socket'],
        action: 'SCMP_ACT_ALLOW',
        args: [{ index: 0, value: AF_VSOCK, op: 'SCMP_CMP_NE' }],
      },
      // PER_LINUX, PER_LINUX32, UNAME26 (and both), and the query 0xffffffff: never ADDR_NO_RANDOMIZE
      // or READ_IMPLIES_EXEC.
      ...[0, 0x8, 0x20000, 0x20008, 0xffffffff].map((value): OciSyscallRule => ({
        names: ['personality'],
        action: 'SCMP_ACT_ALLOW',
        args: [{ index: 0, value, op: 'SCMP_CMP_EQ' }],
      })),
    ],
  }
  const allowed = new Set(
    profile.syscalls.filter((r) => r.action === 'SCMP_ACT_ALLOW').flatMap((r) => r.names),
  )
  for (const name of DENIED_SYSCALLS) assert(!allowed.has(name), `seccomp: ${name} must not be allowed`)
  return profile
}
