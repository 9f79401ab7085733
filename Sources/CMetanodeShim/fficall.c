// Calls a plugin's exported function through libffi. The kernel has already checked the arguments against the
// prototype declared in the manifest; this file only maps kinds to libffi types.
#include "CMetanodeShim.h"
#include <ffi.h>
#include <string.h>

static ffi_type *mn_bytes_elements[3];
static ffi_type mn_bytes_type;
static int mn_bytes_type_ready = 0;

static ffi_type *kind_type(int32_t kind) {
  switch (kind) {
    case MN_FFI_VOID: return &ffi_type_void;
    case MN_FFI_I32: return &ffi_type_sint32;
    case MN_FFI_I64: return &ffi_type_sint64;
    case MN_FFI_U32: return &ffi_type_uint32;
    case MN_FFI_U64: return &ffi_type_uint64;
    case MN_FFI_F64: return &ffi_type_double;
    case MN_FFI_CSTR: return &ffi_type_pointer;
    case MN_FFI_BYTES:
      if (!__atomic_load_n(&mn_bytes_type_ready, __ATOMIC_ACQUIRE)) {
        // Benign race: every thread writes the same values.
        mn_bytes_elements[0] = &ffi_type_pointer;
        mn_bytes_elements[1] = sizeof(size_t) == 8 ? &ffi_type_uint64 : &ffi_type_uint32;
        mn_bytes_elements[2] = NULL;
        mn_bytes_type.size = 0;
        mn_bytes_type.alignment = 0;
        mn_bytes_type.type = FFI_TYPE_STRUCT;
        mn_bytes_type.elements = mn_bytes_elements;
        __atomic_store_n(&mn_bytes_type_ready, 1, __ATOMIC_RELEASE);
      }
      return &mn_bytes_type;
    default: return NULL;
  }
}

int mn_ffi_call(void *fn, int32_t result_kind, int32_t nargs, const int32_t *arg_kinds, mn_ffi_value *args,
                mn_ffi_value *result) {
  if (nargs < 0 || nargs > MN_FFI_ARGS_MAX) return -2;
  if (result_kind == MN_FFI_BYTES) return -1;
  ffi_type *rtype = kind_type(result_kind);
  if (!rtype) return -1;
  ffi_type *atypes[MN_FFI_ARGS_MAX];
  void *avalues[MN_FFI_ARGS_MAX];
  for (int32_t i = 0; i < nargs; i++) {
    atypes[i] = kind_type(arg_kinds[i]);
    if (!atypes[i] || arg_kinds[i] == MN_FFI_VOID) return -1;
    avalues[i] = &args[i];
  }
  ffi_cif cif;
  if (ffi_prep_cif(&cif, FFI_DEFAULT_ABI, (unsigned)nargs, rtype, atypes) != FFI_OK) return -3;
  // libffi widens integral results narrower than a register to ffi_arg.
  union { ffi_arg word; double f64; void *ptr; uint64_t u64; } raw;
  memset(&raw, 0, sizeof(raw));
  ffi_call(&cif, FFI_FN(fn), &raw, avalues);
  memset(result, 0, sizeof(*result));
  switch (result_kind) {
    case MN_FFI_VOID: break;
    case MN_FFI_I32: result->i32 = (int32_t)raw.word; break;
    case MN_FFI_U32: result->u32 = (uint32_t)raw.word; break;
    case MN_FFI_I64: result->i64 = (int64_t)raw.u64; break;
    case MN_FFI_U64: result->u64 = raw.u64; break;
    case MN_FFI_F64: result->f64 = raw.f64; break;
    case MN_FFI_CSTR: result->cstr = (const char *)raw.ptr; break;
  }
  return 0;
}
