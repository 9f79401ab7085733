// A stand-in for a node process, linked with Sources/CMetanodeShim/crashguard.c: it opens the crash guard record,
// names slot 0 "victim", installs the fatal-signal handlers and enters that plugin's on_message hook. Then:
//   crashchild PATH abort   aborts inside the hook
//   crashchild PATH clean   leaves the hook, marks a clean exit and exits 0
#include "CMetanodeShim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: crashchild PATH abort|clean\n");
    return 2;
  }
  if (mn_cg_open(argv[1]) != 0 || mn_cg_set_slot_name(0, "victim") != 0 || mn_cg_install_signal_handlers() != 0) {
    perror("crash guard");
    return 3;
  }
  int64_t token = mn_cg_enter(0, 5 /* PluginHook.message: on_message */);
  if (strcmp(argv[2], "abort") == 0) abort();
  mn_cg_leave(token);
  mn_cg_mark_clean_exit();
  return 0;
}
