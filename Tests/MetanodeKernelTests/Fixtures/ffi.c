// A plugin exporting one function per type the libffi call path supports, for the kernel's unit tests.
// Compile with -DPLUGIN_NAME and -DPLUGIN_VERSION (strings).
#include <metanode/plugin.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

EXPORT int32_t i32_negate(int32_t x) { return -x; }
EXPORT int64_t i64_echo(int64_t x) { return x; }
EXPORT uint32_t u32_complement(uint32_t x) { return ~x; }
EXPORT uint64_t u64_echo(uint64_t x) { return x; }
EXPORT double f64_multiply(double x, double y) { return x * y; }

// Uppercases ASCII letters and leaves every other byte (so UTF-8) alone; the result is the plugin's own buffer.
static char upper[1024];
EXPORT const char *str_upper(const char *s) {
  size_t i = 0;
  for (; s[i] && i < sizeof upper - 1; i++) upper[i] = (s[i] >= 'a' && s[i] <= 'z') ? (char)(s[i] - 32) : s[i];
  upper[i] = 0;
  return upper;
}

EXPORT uint64_t str_bytes(const char *s) { return strlen(s); }

EXPORT uint64_t bytes_len(mn_bytes data) { return data.len; }

// 64-bit FNV-1a of the bytes.
EXPORT uint64_t bytes_fnv1a(mn_bytes data) {
  uint64_t hash = 14695981039346656037ull;
  for (size_t i = 0; i < data.len; i++) {
    hash ^= data.ptr[i];
    hash *= 1099511628211ull;
  }
  return hash;
}

static int32_t bump_count;
EXPORT void bump(void) { bump_count++; }
EXPORT int32_t bumps(void) { return bump_count; }

// Every parameter kind in one call: checks that libffi puts each in its place.
EXPORT double mixed(int32_t a, int64_t b, uint32_t c, uint64_t d, double e, const char *s, mn_bytes m) {
  return (double)a + (double)b + (double)c + (double)d + e + (double)strlen(s) * 1000 + (double)m.len * 100000;
}

// Sixteen parameters, the most a prototype may have: the later ones go on the stack.
EXPORT int64_t weighted16(int64_t a1, int64_t a2, int64_t a3, int64_t a4, int64_t a5, int64_t a6, int64_t a7,
                          int64_t a8, int64_t a9, int64_t a10, int64_t a11, int64_t a12, int64_t a13, int64_t a14,
                          int64_t a15, int64_t a16) {
  int64_t v[16] = {a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16};
  int64_t sum = 0;
  for (int i = 0; i < 16; i++) sum += v[i] * (i + 1);
  return sum;
}

static const mn_plugin_descriptor descriptor = {
    .struct_size = sizeof(mn_plugin_descriptor),
    .abi_major = MN_ABI_VERSION_MAJOR,
    .abi_minor = MN_ABI_VERSION_MINOR,
    .name = PLUGIN_NAME,
    .version = PLUGIN_VERSION,
};

EXPORT const mn_plugin_descriptor *metanode_plugin_entry_v1(void) { return &descriptor; }
