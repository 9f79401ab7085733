/*
 * CDockLock: the steps of starting a container that Swift cannot take safely in a multi-threaded process.
 *
 * dl_spawn clones the caller into new PID, mount, UTS, IPC and network namespaces with one clone(CLONE_VM |
 * CLONE_VFORK), posix_spawn's way: no page tables are copied, and the calling thread sleeps until the child execs.
 * Between clone and execve the child makes only raw system calls — no malloc, no locks, no stdio — and writes only
 * to its own stack, because it runs in the memory of a multi-threaded process. It reports a failed step and errno
 * through a close-on-exec pipe; EOF on the pipe means execve succeeded. It closes every inherited fd but 0-2.
 *
 * dl_seccomp_compile turns a rule list into classic BPF with libseccomp, once per profile; the child only loads the
 * finished program (seccomp(2)), which needs no library code.
 */
#ifndef CDOCKLOCK_H
#define CDOCKLOCK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#ifdef __cplusplus
extern "C" {
#endif

/* GNU-only calls Swift's Glibc module does not always show, as plain functions. */
static inline int dl_memfd_create(const char *name, unsigned int flags) {
  return (int)syscall(SYS_memfd_create, name, flags);
}
static inline int dl_pipe_cloexec(int fds[2]) { return (int)syscall(SYS_pipe2, fds, 02000000 /* O_CLOEXEC */); }
static inline int dl_gettid(void) { return (int)syscall(SYS_gettid); }
/* PR_GET_DUMPABLE (3): whether this process's memory may be dumped. prctl is variadic, which Swift cannot call. */
static inline int dl_get_dumpable(void) { return (int)syscall(SYS_prctl, 3, 0, 0, 0, 0); }

enum {
  DL_NETWORK_NONE = 0,     /* a new network namespace with its loopback left down */
  DL_NETWORK_LOOPBACK = 1, /* a new network namespace with `lo` up                 */
};

/* Paths inside the container that are covered: MASKED by /dev/null (files) and READONLY by a read-only bind. */
#define DL_MASKED_PATHS_MAX 16
#define DL_CGROUP_FDS_MAX 8
#define DL_ERROR_TEXT_MAX 256

typedef struct dl_spawn_config {
  const char *rootfs;              /* host directory: bind-mounted (read-only if readonly_root) as the new "/"     */
  const char *const *argv;         /* NULL-terminated; argv[0] without "/" is searched in path_dirs              */
  const char *const *envp;         /* NULL-terminated                                                             */
  const char *const *path_dirs;    /* NULL-terminated directories (inside the container) to search argv[0] in    */
  const char *cwd;                 /* inside the container                                                       */
  const char *hostname;
  uint32_t uid, gid;
  int stdin_fd, stdout_fd, stderr_fd; /* parent fds that become 0, 1, 2                                           */
  const int *cgroup_procs_fds;     /* open, writable cgroup.procs files: the child moves itself into each        */
  size_t cgroup_procs_fd_count;
  int network;                     /* DL_NETWORK_*                                                                */
  int netns_fd;                    /* a fresh network namespace to join (from dl_netns_create), or -1 for a new one */
  int readonly_root;
  int single_cpu;                  /* pin to CPU 0                                                                   */
  uint64_t tmp_size_bytes;         /* size of the tmpfs on /tmp                                                   */
  uint64_t capabilities_kept;      /* bit n = capability n stays in the bounding/permitted/effective sets        */
  const void *seccomp_program;     /* struct sock_filter[seccomp_program_length]; NULL = no filter               */
  size_t seccomp_program_length;   /* in instructions                                                             */
} dl_spawn_config;

typedef struct dl_spawn_result {
  pid_t pid;                       /* the container's init, in the caller's PID namespace                         */
  int pidfd;                       /* a pidfd for it (O_CLOEXEC), for poll/waitid                                 */
  int failed_step;                 /* 0 = exec'd; otherwise a DL_STEP_* (the child has exited with 127)          */
  int failed_errno;
  char error_text[DL_ERROR_TEXT_MAX]; /* "mount /proc: Operation not permitted"; filled by dl_spawn               */
} dl_spawn_result;

/* Starts the container. Returns 0 when the command is running (result->pid, result->pidfd set), -1 otherwise with
 * result->error_text saying which step failed and why. The caller reaps the child (waitid on the pidfd) in both
 * cases where pid > 0. Thread-safe. */
int dl_spawn(const dl_spawn_config *config, dl_spawn_result *result);

/* Reaps the process behind `pidfd` without blocking: 1 with *exited (1 = exit status, 0 = killed by a signal) and
 * *status (the exit status or the signal number) when it had ended, 0 when it is still running, -1 on error. */
int dl_reap(int pidfd, int *exited, int *status);

/* Makes a new, empty network namespace and returns an O_CLOEXEC fd to it (-1 with errno on failure). The calling
 * thread enters it for a moment and returns to its own; call it only on a thread that does nothing else, since it
 * unshares that thread's network namespace. Making one costs about half a millisecond, so DockLock makes them ahead
 * of need and a container joins one with setns (each is used once: containers never share one). */
int dl_netns_create(void);

typedef struct dl_seccomp_argument {
  uint32_t index; /* 0..5                                                                                           */
  uint32_t op;    /* 1 NE, 2 LT, 3 LE, 4 EQ, 5 GE, 6 GT, 7 MASKED_EQ (libseccomp's enum scmp_compare)             */
  uint64_t value;
  uint64_t value_two; /* the mask's operand for MASKED_EQ                                                         */
} dl_seccomp_argument;

typedef struct dl_seccomp_rule {
  const char *syscall;      /* a name; names this architecture does not have are skipped                          */
  uint32_t errno_value;     /* 0 = allow; otherwise fail the call with this errno                                 */
  uint32_t argument_count;  /* 0..6; all must hold                                                                 */
  dl_seccomp_argument arguments[6];
} dl_seccomp_rule;

/* Compiles rules over a default action of "fail with default_errno" for the native architecture (other
 * architectures' system calls kill the process). Writes the BPF program to `out` (capacity bytes) and its length in
 * bytes to *out_length. Returns 0, or -1 with error_text set (an unknown comparison, a full buffer, libseccomp's
 * errors). */
int dl_seccomp_compile(const dl_seccomp_rule *rules, size_t rule_count, uint32_t default_errno, void *out,
                       size_t capacity, size_t *out_length, char *error_text, size_t error_text_capacity);

#ifdef __cplusplus
}
#endif
#endif
