#ifndef METANODE_CFFI_SHIM_H
#define METANODE_CFFI_SHIM_H
#include <ffi.h>
#endif
