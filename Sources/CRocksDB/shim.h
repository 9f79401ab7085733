#ifndef METANODE_CROCKSDB_SHIM_H
#define METANODE_CROCKSDB_SHIM_H
#include <rocksdb/c.h>
#endif
