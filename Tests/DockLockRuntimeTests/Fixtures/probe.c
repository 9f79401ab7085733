// A hostile workload for DockLock's tests: tries one forbidden operation and says what happened.
// Prints "blocked: <errno text>" and exits 0 when the kernel refused it, "ALLOWED" and exits 1 when it worked.
// Built statically by the tests (clang -static) and copied into the test image.
#define _GNU_SOURCE
#include <errno.h>
#include <linux/kexec.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>

static int verdict(long rc) {
  if (rc < 0) {
    printf("blocked: %s\n", strerror(errno));
    return 0;
  }
  printf("ALLOWED\n");
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  const char *what = argv[1];
  if (!strcmp(what, "mount")) return verdict(mount("none", "/tmp", "tmpfs", 0, NULL));
  if (!strcmp(what, "unshare")) return verdict(unshare(CLONE_NEWNS));
  if (!strcmp(what, "kexec_load")) return verdict(syscall(SYS_kexec_load, 0, 0, NULL, KEXEC_ARCH_DEFAULT));
  if (!strcmp(what, "raw_socket")) return verdict(socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
  if (!strcmp(what, "ptrace")) {
    pid_t child = fork();
    if (child == 0) { pause(); _exit(0); }
    long rc = ptrace(PTRACE_ATTACH, child, NULL, NULL);
    int result = verdict(rc);
    kill(child, 9);
    waitpid(child, NULL, 0);
    return result;
  }
  if (!strcmp(what, "proc_sys")) {
    FILE *f = fopen("/proc/sys/kernel/hostname", "w");
    if (!f) return verdict(-1);
    int rc = fputs("escaped", f) < 0 || fclose(f) != 0 ? -1 : 0;
    return verdict(rc);
  }
  if (!strcmp(what, "clone_newuser")) return verdict(unshare(CLONE_NEWUSER));
  return 2;
}
