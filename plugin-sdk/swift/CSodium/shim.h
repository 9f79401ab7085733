#ifndef METANODE_CSODIUM_SHIM_H
#define METANODE_CSODIUM_SHIM_H
#include <sodium.h>
#endif
