// dl_spawn: one clone into new namespaces, then the container's set-up in the child, then execve.
//
// The clone is posix_spawn's CLONE_VM | CLONE_VFORK: the child runs in the daemon's address space, on a stack of its
// own, while the calling thread sleeps until execve (or the child's exit). Nothing is copied, so a start costs the
// same however large the daemon is: a fork-style copy of a 56 MB daemon's page tables took about 0.7 ms per container,
// and left every page the daemon wrote afterwards to fault once more. Linux allows CLONE_VM with CLONE_NEWPID (only
// CLONE_THREAD is refused); it is the time namespace that may not share a VM, and DockLock does not make one.
//
// Sharing the address space sets the rules for the child: it calls only raw system calls and thin libc wrappers (no
// malloc, no locks, no stdio: another thread may hold them), writes to nothing but its own stack, and runs with every
// signal blocked until its handlers are reset, because a handler copied from the parent would run the daemon's code
// on the daemon's memory. errno is the calling thread's; that thread is asleep until the child is gone from its
// memory. A failed step is reported through a close-on-exec pipe; EOF on that pipe means execve succeeded.
#define _GNU_SOURCE
#include "cdocklock.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/sched.h>
#include <pthread.h>
#include <sched.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

enum {
  STEP_NONE = 0,
  STEP_OOM_SCORE,
  STEP_CGROUP,
  STEP_NETNS,
  STEP_PRIVATE,
  STEP_BIND_ROOT,
  STEP_CHDIR_ROOT,
  STEP_PROC,
  STEP_MASK,
  STEP_DEV,
  STEP_TMP,
  STEP_PIVOT,
  STEP_READONLY_ROOT,
  STEP_HOSTNAME,
  STEP_AFFINITY,
  STEP_LOOPBACK,
  STEP_STDIO,
  STEP_CWD,
  STEP_IDS,
  STEP_CAPABILITIES,
  STEP_NO_NEW_PRIVS,
  STEP_SECCOMP,
  STEP_EXEC,
};

static const char *step_name(int step) {
  switch (step) {
  case STEP_OOM_SCORE: return "set the OOM score adjustment";
  case STEP_CGROUP: return "join the container's cgroups";
  case STEP_NETNS: return "join the container's network namespace";
  case STEP_PRIVATE: return "make the mount tree private";
  case STEP_BIND_ROOT: return "bind-mount the root filesystem";
  case STEP_CHDIR_ROOT: return "enter the root filesystem";
  case STEP_PROC: return "mount /proc";
  case STEP_MASK: return "mask /proc paths";
  case STEP_DEV: return "populate /dev";
  case STEP_TMP: return "mount /tmp";
  case STEP_PIVOT: return "pivot_root";
  case STEP_READONLY_ROOT: return "remount the root read-only";
  case STEP_HOSTNAME: return "set the hostname";
  case STEP_AFFINITY: return "pin to one CPU";
  case STEP_LOOPBACK: return "bring up the loopback interface";
  case STEP_STDIO: return "connect stdin/stdout/stderr";
  case STEP_CWD: return "change to the working directory";
  case STEP_IDS: return "set user and group ids";
  case STEP_CAPABILITIES: return "drop capabilities";
  case STEP_NO_NEW_PRIVS: return "set no_new_privs";
  case STEP_SECCOMP: return "install the seccomp filter";
  case STEP_EXEC: return "execute the command";
  default: return "set up the container";
  }
}

// Files Docker hides behind /dev/null and directories it makes read-only; a path the kernel lacks is skipped.
static const char *const masked_files[] = {"proc/kcore", "proc/keys", "proc/latency_stats", "proc/timer_list",
                                           "proc/timer_stats", "proc/sched_debug", NULL};
static const char *const masked_directories[] = {"proc/acpi", "proc/scsi", NULL};
static const char *const readonly_paths[] = {"proc/bus", "proc/fs", "proc/irq", "proc/sys", "proc/sysrq-trigger",
                                             NULL};

struct device_node {
  const char *path;
  unsigned major, minor;
};
static const struct device_node devices[] = {
    {"dev/null", 1, 3}, {"dev/zero", 1, 5}, {"dev/full", 1, 7},
    {"dev/random", 1, 8}, {"dev/urandom", 1, 9}, {"dev/tty", 5, 0},
};

// Whether this process holds CAP_SYS_RESOURCE, needed to lower oom_score_adj (run_child); read once at load, so that
// a node without it (some sandboxes drop it) does not try, and fail, for every container.
static int can_lower_oom_score = 0;
__attribute__((constructor)) static void check_sys_resource(void) {
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof data);
  if (syscall(SYS_capget, &header, data) == 0) can_lower_oom_score = (data[0].effective >> CAP_SYS_RESOURCE) & 1;
}

struct child_report {
  int step;
  int error;
};

static void report(int fd, int step, int error) {
  struct child_report r = {step, error};
  ssize_t ignored = write(fd, &r, sizeof r);
  (void)ignored;
  _exit(127);
}

#define CHECK(expr, step)                                                                                              \
  do {                                                                                                                 \
    if ((expr) < 0) report(report_fd, (step), errno);                                                                  \
  } while (0)

static size_t text_length(const char *s) {
  size_t n = 0;
  while (s[n]) n++;
  return n;
}

// The child's side: everything from the first instruction after clone to execve. Never returns.
static void run_child(const dl_spawn_config *c, int report_fd) {
  // Handlers copied from the parent must not run in the child; the mask stays full until just before execve.
  // The raw call: glibc's sigaction refuses its own internal signals (32, 33), whose handlers would stay installed.
  struct { void *handler; unsigned long flags; void *restorer; uint64_t mask; } dfl = {SIG_DFL, 0, NULL, 0};
  for (int sig = 1; sig < 65; sig++) {
    (void)syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof(uint64_t)); // SIGKILL and SIGSTOP refuse; that is fine
  }
  (void)setsid();
  // Until execve the child shares the daemon's memory, and the OOM killer kills every process sharing a victim's
  // memory: chosen while still setting up (in its cgroup, with the daemon's RSS counted as its own), it would take the
  // daemon with it. So it is made unchoosable until it has its own memory, and the inherited value is restored before
  // the capabilities go (a value set with CAP_SYS_RESOURCE is also the lowest the container may set later). CLONE_VFORK
  // keeps this to the child: the kernel does not spread a vfork child's value to the mm's other users. Without
  // CAP_SYS_RESOURCE (can_lower_oom_score) this is skipped; the set-up's kernel allocations charged to the
  // container's cgroup are a few hundred KiB, far below the 4 MiB minimum memory limit.
  char oom_saved[16];
  ssize_t oom_saved_length = -1;
  int oom_fd = can_lower_oom_score ? open("/proc/self/oom_score_adj", O_RDWR | O_CLOEXEC) : -1;
  if (oom_fd >= 0) {
    oom_saved_length = read(oom_fd, oom_saved, sizeof oom_saved);
    if (oom_saved_length > 0 && pwrite(oom_fd, "-1000", 5, 0) < 0) oom_saved_length = -1; // nothing to restore
  }
  for (size_t i = 0; i < c->cgroup_procs_fd_count; i++) {
    CHECK(write(c->cgroup_procs_fds[i], "0", 1), STEP_CGROUP); // "0" moves the writing process
  }
  if (c->netns_fd >= 0) CHECK(setns(c->netns_fd, CLONE_NEWNET), STEP_NETNS);

  // Mounts: nothing propagates back to the host; the image's directory becomes a mount we can pivot into.
  CHECK(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), STEP_PRIVATE);
  CHECK(mount(c->rootfs, c->rootfs, NULL, MS_BIND | MS_REC, NULL), STEP_BIND_ROOT);
  CHECK(chdir(c->rootfs), STEP_CHDIR_ROOT); // the mount just made, now that it covers the directory
  CHECK(mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL), STEP_PROC);
  for (const char *const *p = masked_files; *p; p++) {
    if (mount("/dev/null", *p, NULL, MS_BIND, NULL) < 0 && errno != ENOENT) report(report_fd, STEP_MASK, errno);
  }
  for (const char *const *p = masked_directories; *p; p++) {
    if (mount("tmpfs", *p, "tmpfs", MS_RDONLY, "size=0") < 0 && errno != ENOENT) report(report_fd, STEP_MASK, errno);
  }
  for (const char *const *p = readonly_paths; *p; p++) {
    if (mount(*p, *p, NULL, MS_BIND | MS_REC, NULL) < 0) {
      if (errno == ENOENT) continue;
      report(report_fd, STEP_MASK, errno);
    }
    CHECK(mount(NULL, *p, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL),
          STEP_MASK);
  }
  CHECK(mount("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=64k"), STEP_DEV);
  (void)umask(0);
  for (size_t i = 0; i < sizeof devices / sizeof devices[0]; i++) {
    CHECK(mknod(devices[i].path, S_IFCHR | 0666, makedev(devices[i].major, devices[i].minor)), STEP_DEV);
  }
  CHECK(symlink("/proc/self/fd", "dev/fd"), STEP_DEV);
  CHECK(symlink("/proc/self/fd/0", "dev/stdin"), STEP_DEV);
  CHECK(symlink("/proc/self/fd/1", "dev/stdout"), STEP_DEV);
  CHECK(symlink("/proc/self/fd/2", "dev/stderr"), STEP_DEV);
  // POSIX shared memory lives in the writable /tmp tmpfs: a tmpfs of its own costs a superblock torn down at every
  // exit (measured: +0.5 ms per container).
  CHECK(symlink("/tmp", "dev/shm"), STEP_DEV);
  CHECK(mount(NULL, "dev", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC, "mode=755,size=64k"), STEP_DEV);
  (void)umask(022);
  char tmp_options[64] = "mode=1777,size=";
  {
    // size=<bytes>: digits by hand (no snprintf here).
    char digits[24];
    int n = 0;
    uint64_t v = c->tmp_size_bytes ? c->tmp_size_bytes : (64u << 20);
    do { digits[n++] = (char)('0' + v % 10); v /= 10; } while (v && n < 23);
    size_t at = text_length(tmp_options);
    while (n > 0) tmp_options[at++] = digits[--n];
    tmp_options[at] = 0;
  }
  CHECK(mount("tmpfs", "tmp", "tmpfs", MS_NOSUID | MS_NODEV, tmp_options), STEP_TMP);

  // pivot_root(".", "."): the old root ends up stacked under the new one, and is detached at once.
  CHECK(syscall(SYS_pivot_root, ".", "."), STEP_PIVOT);
  CHECK(umount2(".", MNT_DETACH), STEP_PIVOT);
  CHECK(chdir("/"), STEP_PIVOT);
  if (c->readonly_root) {
    CHECK(mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL), STEP_READONLY_ROOT);
  }

  if (c->single_cpu) {
    uint64_t mask = 1;
    CHECK(syscall(SYS_sched_setaffinity, 0, sizeof mask, &mask), STEP_AFFINITY);
  }
  if (c->hostname) CHECK(sethostname(c->hostname, text_length(c->hostname)), STEP_HOSTNAME);
  if (c->network == DL_NETWORK_LOOPBACK) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CHECK(s, STEP_LOOPBACK);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, "lo", 3);
    CHECK(ioctl(s, SIOCGIFFLAGS, &ifr), STEP_LOOPBACK);
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    CHECK(ioctl(s, SIOCSIFFLAGS, &ifr), STEP_LOOPBACK);
    close(s);
  }

  // The set-up's allocations are done: back to the inherited OOM score, while CAP_SYS_RESOURCE is still held.
  if (oom_saved_length > 0) {
    CHECK(pwrite(oom_fd, oom_saved, (size_t)oom_saved_length, 0), STEP_OOM_SCORE);
  }
  if (oom_fd >= 0) close(oom_fd);

  CHECK(dup2(c->stdin_fd, 0), STEP_STDIO);
  CHECK(dup2(c->stdout_fd, 1), STEP_STDIO);
  CHECK(dup2(c->stderr_fd, 2), STEP_STDIO);
  // Nothing else of the daemon's goes in: not every library opens its files and sockets close-on-exec. The report
  // pipe moves to fd 3 (still close-on-exec) so the steps after this can report.
  if (report_fd != 3) {
    CHECK(syscall(SYS_dup3, report_fd, 3, O_CLOEXEC), STEP_STDIO);
    report_fd = 3;
  }
  CHECK(syscall(SYS_close_range, 4, ~0u, 0), STEP_STDIO);
  if (c->cwd) CHECK(chdir(c->cwd), STEP_CWD);

  // The bounding set first, while the child is still root with CAP_SETPCAP: once setresuid leaves uid 0, the kernel
  // clears the effective set and PR_CAPBSET_DROP would fail.
  for (int cap = 0; cap < 64; cap++) {
    if (c->capabilities_kept & (1ull << cap)) continue;
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) report(report_fd, STEP_CAPABILITIES, errno);
  }
  (void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);

  // Ids through raw system calls: glibc's setresuid signals every thread of the process it believes it is in.
  // (uid_t)-1 would mean "unchanged"; the runtime refuses it before it gets here.
  if (c->uid == (uint32_t)-1 || c->gid == (uint32_t)-1) report(report_fd, STEP_IDS, EINVAL);
  CHECK(syscall(SYS_setgroups, 0, NULL), STEP_IDS);
  CHECK(syscall(SYS_setresgid, c->gid, c->gid, c->gid), STEP_IDS);
  CHECK(syscall(SYS_setresuid, c->uid, c->uid, c->uid), STEP_IDS);
  {
    // Root keeps the kept set; anyone else has none. Inheritable stays empty (CVE-2022-24769).
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    uint64_t keep = c->uid == 0 ? c->capabilities_kept : 0;
    data[0].effective = data[0].permitted = (uint32_t)keep;
    data[1].effective = data[1].permitted = (uint32_t)(keep >> 32);
    CHECK(syscall(SYS_capset, &header, data), STEP_CAPABILITIES);
  }
  CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), STEP_NO_NEW_PRIVS);
  if (c->seccomp_program) {
    struct sock_fprog program = {(unsigned short)c->seccomp_program_length,
                                 (struct sock_filter *)c->seccomp_program};
    CHECK(syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &program), STEP_SECCOMP);
  }

  sigset_t none;
  sigemptyset(&none);
  (void)syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, sizeof(uint64_t));

  const char *command = c->argv[0];
  if (strchr(command, '/')) {
    execve(command, (char *const *)c->argv, (char *const *)c->envp);
    report(report_fd, STEP_EXEC, errno);
  }
  int last = ENOENT;
  char path[4096];
  size_t command_length = text_length(command);
  for (const char *const *dir = c->path_dirs; dir && *dir; dir++) {
    size_t dir_length = text_length(*dir);
    if (dir_length + 1 + command_length + 1 > sizeof path) continue;
    memcpy(path, *dir, dir_length);
    path[dir_length] = '/';
    memcpy(path + dir_length + 1, command, command_length + 1);
    execve(path, (char *const *)c->argv, (char *const *)c->envp);
    if (errno != ENOENT && errno != ENOTDIR) last = errno; // EACCES on one directory should not hide it
  }
  report(report_fd, STEP_EXEC, last);
}

struct child_start {
  const dl_spawn_config *config;
  int report_fd;
  int report_read_fd;
};

static int child_main(void *argument) {
  const struct child_start *start = argument; // the caller's frame: it sleeps (CLONE_VFORK) while the child reads it
  close(start->report_read_fd);               // the child's own fd table (no CLONE_FILES)
  run_child(start->config, start->report_fd);
  return 127; // unreachable: run_child execs or _exits
}

// The child's stack: path[4096] and a few frames, with a guard page below it. mmap'd per start, since concurrent
// starts each need one; the calling thread unmaps it once it wakes, when the child has left the shared memory.
enum { CHILD_STACK_SIZE = 64 * 1024 };

// Whether the daemon's memory may be dumped, as it was when the library loaded. A child changing its uid or gid calls
// commit_creds, which marks its mm non-dumpable; with CLONE_VM that mm is the daemon's, so dl_spawn puts it back —
// but only when no other child shares it: a child that is already another uid must not find the daemon's memory
// dumpable (ptrace by that uid). Spawns hold the lock shared while their child lives; putting it back takes it
// exclusively, without waiting: the last spawn to finish does it.
static int daemon_dumpable = -1;
static pthread_rwlock_t children_sharing_memory = PTHREAD_RWLOCK_INITIALIZER;
__attribute__((constructor)) static void remember_dumpable(void) { daemon_dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0); }

static void restore_dumpable(void) {
  if (daemon_dumpable != 1 || pthread_rwlock_trywrlock(&children_sharing_memory) != 0) return;
  (void)prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
  pthread_rwlock_unlock(&children_sharing_memory);
}

int dl_spawn(const dl_spawn_config *c, dl_spawn_result *result) {
  memset(result, 0, sizeof *result);
  result->pidfd = -1;
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) < 0) {
    result->failed_errno = errno;
    snprintf(result->error_text, sizeof result->error_text, "pipe2: %s", strerror(errno));
    return -1;
  }
  // Whole pages (64 KiB on some arm64 and ppc64 kernels): a 4 KiB guard would take the stack's first page with it.
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size_t stack_size = (CHILD_STACK_SIZE + page - 1) / page * page, mapped = stack_size + page;
  char *stack = mmap(NULL, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED || mprotect(stack, page, PROT_NONE) < 0) {
    result->failed_errno = errno;
    snprintf(result->error_text, sizeof result->error_text, "mmap the child's stack: %s", strerror(errno));
    if (stack != MAP_FAILED) munmap(stack, mapped);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    return -1;
  }

  // Every signal blocked, glibc's internal ones too (pthread_sigmask would leave those open): the raw system call.
  uint64_t all = ~0ull, old = 0;
  (void)syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, &old, sizeof(uint64_t));

  int flags = CLONE_VM | CLONE_VFORK | CLONE_PIDFD | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | SIGCHLD;
  if (c->netns_fd < 0) flags |= CLONE_NEWNET;
  struct child_start start = {c, pipe_fds[1], pipe_fds[0]};
  int pidfd = -1; // clone(2) stores the pidfd through parent_tid when CLONE_PIDFD is set
  pthread_rwlock_rdlock(&children_sharing_memory);
  int pid = clone(child_main, stack + mapped, flags, &start, &pidfd);
  int clone_errno = errno;
  pthread_rwlock_unlock(&children_sharing_memory);
  restore_dumpable();
  (void)syscall(SYS_rt_sigprocmask, SIG_SETMASK, &old, NULL, sizeof(uint64_t));
  munmap(stack, mapped);
  close(pipe_fds[1]);
  if (pid < 0) {
    close(pipe_fds[0]);
    result->failed_errno = clone_errno;
    snprintf(result->error_text, sizeof result->error_text, "clone into new namespaces: %s", strerror(clone_errno));
    return -1;
  }
  result->pid = (pid_t)pid;
  result->pidfd = pidfd;

  // The child has exec'd or exited by now (CLONE_VFORK), so a report, if any, is already in the pipe.
  struct child_report r = {0, 0};
  ssize_t n;
  do { n = read(pipe_fds[0], &r, sizeof r); } while (n < 0 && errno == EINTR);
  close(pipe_fds[0]);
  if (n == (ssize_t)sizeof r) {
    result->failed_step = r.step;
    result->failed_errno = r.error;
    snprintf(result->error_text, sizeof result->error_text, "%s: %s", step_name(r.step), strerror(r.error));
    return -1;
  }
  return 0;
}

int dl_reap(int pidfd, int *exited, int *status) {
  siginfo_t info;
  memset(&info, 0, sizeof info);
  if (waitid((idtype_t)P_PIDFD, (id_t)pidfd, &info, WEXITED | WNOHANG) < 0) return -1;
  if (info.si_pid == 0) return 0;
  *exited = info.si_code == CLD_EXITED;
  *status = info.si_status;
  return 1;
}

int dl_netns_create(void) {
  int own = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (own < 0) return -1;
  if (unshare(CLONE_NEWNET) < 0) {
    int error = errno;
    close(own);
    errno = error;
    return -1;
  }
  int fresh = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  int error = errno;
  if (setns(own, CLONE_NEWNET) < 0) abort(); // a thread left in another namespace would be a silent bug
  close(own);
  errno = error;
  return fresh;
}
