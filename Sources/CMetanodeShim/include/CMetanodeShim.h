/*
 * CMetanodeShim — the few things the kernel must do in C:
 *  - the crash guard: which plugin call is in progress, kept in a memory-mapped file that survives the process, and a
 *    fatal-signal handler that names the plugin a crash happened in;
 *  - calling a plugin's exported function through libffi from a runtime-described signature.
 */
#ifndef METANODE_CSHIM_H
#define METANODE_CSHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- crash guard ------------------------------------------------------------------------------------------------ */

#define MN_CG_MAGIC 0x4d4e4347u /* "MNCG" */
#define MN_CG_VERSION 1u
#define MN_CG_SLOTS_MAX 256
#define MN_CG_NAME_LEN_MAX 64

#define MN_CG_STATE_RUNNING 1u
#define MN_CG_STATE_CLEAN_EXIT 2u

/** The file's layout. Written by one process at a time; read by the next start. */
typedef struct mn_cg_file {
  uint32_t magic;
  uint32_t version;
  int32_t pid;
  uint32_t state;
  int32_t culprit_slot;    /* plugin slot whose call was running on the thread that took a fatal signal; -1 none */
  int32_t culprit_signal;
  uint32_t culprit_hook;
  uint32_t slot_count;
  uint32_t inflight[MN_CG_SLOTS_MAX];               /* per slot: the hook in progress, 0 when idle */
  char names[MN_CG_SLOTS_MAX][MN_CG_NAME_LEN_MAX];  /* per slot: plugin name, NUL-terminated */
} mn_cg_file;

/** Copies the previous run's record from `path` into `out`. Returns 0, or -1 (errno set) if absent or unreadable. */
int mn_cg_read_previous(const char *path, mn_cg_file *out);

/** Creates (truncating) and maps the record for this run. Returns 0 or -1 with errno set. */
int mn_cg_open(const char *path);

/** Names a slot. Slots index plugins in load order. Returns 0, or -1 if the slot is out of range. */
int mn_cg_set_slot_name(int32_t slot, const char *name);

/** Installs the fatal-signal handlers (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP), chaining to previous ones. */
int mn_cg_install_signal_handlers(void);

/** Gives the calling thread an alternate signal stack so a stack overflow can still be recorded. */
int mn_cg_thread_prepare(void);

/** Marks the start of a call into plugin `slot` on this thread; returns a token for mn_cg_leave. */
int64_t mn_cg_enter(int32_t slot, uint32_t hook);

/** Marks the end of the call begun by the matching mn_cg_enter. */
void mn_cg_leave(int64_t token);

/** Records a clean shutdown: the next start will not quarantine anything. */
void mn_cg_mark_clean_exit(void);

/** Names the calling thread (at most 15 bytes show on Linux), so crash reports and `top -H` say which plugin. */
int mn_thread_set_name(const char *name);

/* ---- libffi calls ----------------------------------------------------------------------------------------------- */

#define MN_FFI_VOID 0
#define MN_FFI_I32 1
#define MN_FFI_I64 2
#define MN_FFI_U32 3
#define MN_FFI_U64 4
#define MN_FFI_F64 5
#define MN_FFI_CSTR 6
#define MN_FFI_BYTES 7
#define MN_FFI_ARGS_MAX 16

typedef union mn_ffi_value {
  int32_t i32;
  int64_t i64;
  uint32_t u32;
  uint64_t u64;
  double f64;
  const char *cstr;
  struct { const uint8_t *ptr; size_t len; } bytes; /* the layout of mn_bytes in metanode/plugin.h */
} mn_ffi_value;

/**
 * Calls `fn` with `nargs` arguments of the given kinds and stores the result in `*result`.
 * Returns 0, or a negative number if the signature is invalid (-1 bad kind, -2 too many args, -3 libffi refused).
 */
int mn_ffi_call(void *fn, int32_t result_kind, int32_t nargs, const int32_t *arg_kinds, mn_ffi_value *args,
                mn_ffi_value *result);

#ifdef __cplusplus
}
#endif
#endif
