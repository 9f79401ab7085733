#ifndef METANODE_CZLIB_SHIM_H
#define METANODE_CZLIB_SHIM_H
#include <zlib.h>
// inflateInit2 is a macro; Swift cannot call macros.
static inline int mn_inflate_init_gzip(z_stream *stream) { return inflateInit2(stream, 16 + MAX_WBITS); }
#endif
