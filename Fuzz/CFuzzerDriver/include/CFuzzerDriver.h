#ifndef METANODE_CFUZZERDRIVER_H
#define METANODE_CFUZZERDRIVER_H
#include <stddef.h>
#include <stdint.h>

/* libFuzzer's driver (compiler-rt, LLVM 12 and later), linked by -sanitize=fuzzer. The fuzzers call it from their own
 * main: SwiftPM renames an executable's entry point to <module>_main and aliases main to it, so libFuzzer's main is
 * never linked in. */
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
