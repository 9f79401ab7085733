// The crash guard. See CMetanodeShim.h. Everything reachable from the signal handler is async-signal-safe: plain
// stores into a MAP_SHARED page (the kernel keeps the page after the process dies), sigaction and raise.
#define _GNU_SOURCE
#include "CMetanodeShim.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static mn_cg_file *volatile cg_file = NULL;
static __thread int32_t cg_current_slot = -1;
static __thread uint32_t cg_current_hook = 0;

static const int cg_signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP};
#define CG_SIGNAL_COUNT ((int)(sizeof(cg_signals) / sizeof(cg_signals[0])))
static struct sigaction cg_previous[CG_SIGNAL_COUNT];

int mn_cg_read_previous(const char *path, mn_cg_file *out) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  size_t got = 0;
  while (got < sizeof(*out)) {
    ssize_t n = read(fd, (char *)out + got, sizeof(*out) - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += (size_t)n;
  }
  close(fd);
  if (got != sizeof(*out) || out->magic != MN_CG_MAGIC || out->version != MN_CG_VERSION) {
    errno = EINVAL;
    return -1;
  }
  if (out->slot_count > MN_CG_SLOTS_MAX) out->slot_count = MN_CG_SLOTS_MAX;
  for (int i = 0; i < MN_CG_SLOTS_MAX; i++) out->names[i][MN_CG_NAME_LEN_MAX - 1] = 0;
  return 0;
}

int mn_cg_open(const char *path) {
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return -1;
  if (ftruncate(fd, (off_t)sizeof(mn_cg_file)) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  void *p = mmap(NULL, sizeof(mn_cg_file), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  int e = errno;
  close(fd);
  if (p == MAP_FAILED) {
    errno = e;
    return -1;
  }
  mn_cg_file *f = (mn_cg_file *)p;
  memset(f, 0, sizeof(*f));
  f->magic = MN_CG_MAGIC;
  f->version = MN_CG_VERSION;
  f->pid = (int32_t)getpid();
  f->state = MN_CG_STATE_RUNNING;
  f->culprit_slot = -1;
  cg_file = f;
  return 0;
}

int mn_cg_set_slot_name(int32_t slot, const char *name) {
  mn_cg_file *f = cg_file;
  if (!f || slot < 0 || slot >= MN_CG_SLOTS_MAX) return -1;
  strncpy(f->names[slot], name, MN_CG_NAME_LEN_MAX - 1);
  f->names[slot][MN_CG_NAME_LEN_MAX - 1] = 0;
  if ((uint32_t)slot + 1 > f->slot_count) f->slot_count = (uint32_t)slot + 1;
  return 0;
}

static void cg_handler(int sig, siginfo_t *info, void *uctx) {
  (void)uctx;
  mn_cg_file *f = cg_file;
  if (f && cg_current_slot >= 0 && f->culprit_slot < 0) {
    f->culprit_slot = cg_current_slot;
    f->culprit_signal = sig;
    f->culprit_hook = cg_current_hook;
  }
  // Hand the signal to whoever had it before us (the Swift runtime's backtracer, or the default action).
  for (int i = 0; i < CG_SIGNAL_COUNT; i++) {
    if (cg_signals[i] == sig) {
      sigaction(sig, &cg_previous[i], NULL);
      break;
    }
  }
  // A fault re-executes the faulting instruction when we return; a sent signal (abort, kill) must be raised again.
  if (info == NULL || info->si_code <= 0) raise(sig);
}

int mn_cg_install_signal_handlers(void) {
  for (int i = 0; i < CG_SIGNAL_COUNT; i++) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = cg_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(cg_signals[i], &sa, &cg_previous[i]) != 0) return -1;
  }
  return 0;
}

int mn_cg_thread_prepare(void) {
  stack_t current;
  if (sigaltstack(NULL, &current) == 0 && !(current.ss_flags & SS_DISABLE) && current.ss_sp != NULL) return 0;
  size_t size = 64 * 1024;
  void *stack = malloc(size);  // lives as long as the thread; executor threads live as long as the process
  if (!stack) return -1;
  stack_t ss = {.ss_sp = stack, .ss_size = size, .ss_flags = 0};
  return sigaltstack(&ss, NULL);
}

int64_t mn_cg_enter(int32_t slot, uint32_t hook) {
  int64_t token = ((int64_t)cg_current_slot << 32) | (int64_t)cg_current_hook;
  cg_current_slot = slot;
  cg_current_hook = hook;
  mn_cg_file *f = cg_file;
  if (f && slot >= 0 && slot < MN_CG_SLOTS_MAX) ((volatile uint32_t *)f->inflight)[slot] = hook;
  return token;
}

void mn_cg_leave(int64_t token) {
  int32_t slot = cg_current_slot;
  mn_cg_file *f = cg_file;
  if (f && slot >= 0 && slot < MN_CG_SLOTS_MAX) ((volatile uint32_t *)f->inflight)[slot] = 0;
  cg_current_slot = (int32_t)(token >> 32);
  cg_current_hook = (uint32_t)(token & 0xffffffff);
  if (f && cg_current_slot >= 0 && cg_current_slot < MN_CG_SLOTS_MAX)
    ((volatile uint32_t *)f->inflight)[cg_current_slot] = cg_current_hook;
}

int mn_thread_set_name(const char *name) {
  char cut[16];
  strncpy(cut, name, sizeof cut - 1);
  cut[sizeof cut - 1] = 0;
  return pthread_setname_np(pthread_self(), cut);
}

void mn_cg_mark_clean_exit(void) {
  mn_cg_file *f = cg_file;
  if (!f) return;
  f->state = MN_CG_STATE_CLEAN_EXIT;
  msync(f, sizeof(*f), MS_SYNC);
}
