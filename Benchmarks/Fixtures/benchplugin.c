// The plugin the kernel benchmarks load. Compiled at benchmark setup with
//   cc -shared -fPIC -O2 -I../plugin-sdk/include -DPLUGIN_NAME='"bench-a"' benchplugin.c -lrocksdb
// The benchmark calls its exported functions directly (dlsym): host functions may be called from any thread.
//
// kv: the same put/get workload through the host vtable (the plugin's namespace in the node's RocksDB) and
// directly against a RocksDB opened here with the same options as the kernel's store, so the difference is the
// vtable's cost. bus: publish from one plugin, count deliveries in another's on_message.
#include <metanode/plugin.h>
#include <rocksdb/c.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))
#define VALUE_BYTES 100

static const mn_host_api *host;
static mn_host_ctx *ctx;
static _Atomic uint64_t received;
static uint8_t value[VALUE_BYTES];

static rocksdb_t *direct;
static rocksdb_readoptions_t *direct_read;
static rocksdb_writeoptions_t *direct_write;

static size_t key_for(uint64_t i, char *key) { return (size_t)snprintf(key, 32, "key-%012llu", (unsigned long long)i); }

EXPORT int32_t bench_kv_put_vtable(uint64_t i) {
  char key[32];
  size_t n = key_for(i, key);
  return host->kv_put(ctx, mn_bytes_make(key, n), mn_bytes_make(value, sizeof value));
}

EXPORT int32_t bench_kv_get_vtable(uint64_t i) {
  char key[32];
  size_t n = key_for(i, key);
  mn_buf out;
  mn_status status = host->kv_get(ctx, mn_bytes_make(key, n), &out);
  if (status == MN_OK) host->buf_free(ctx, out);
  return status;
}

// Opens the direct database with the kernel store's options: LRU block cache 32 MiB, bloom filter 10 bits/key,
// write buffer 32 MiB, lz4, 512 open files, WAL without fsync.
EXPORT int32_t bench_direct_open(const char *path) {
  rocksdb_cache_t *cache = rocksdb_cache_create_lru(32u << 20);
  rocksdb_block_based_table_options_t *table = rocksdb_block_based_options_create();
  rocksdb_block_based_options_set_block_cache(table, cache);
  rocksdb_block_based_options_set_filter_policy(table, rocksdb_filterpolicy_create_bloom_full(10));
  rocksdb_options_t *options = rocksdb_options_create();
  rocksdb_options_set_block_based_table_factory(options, table);
  rocksdb_options_set_create_if_missing(options, 1);
  rocksdb_options_set_write_buffer_size(options, 32u << 20);
  rocksdb_options_set_compression(options, rocksdb_lz4_compression);
  rocksdb_options_set_max_open_files(options, 512);
  char *error = NULL;
  direct = rocksdb_open(options, path, &error);
  rocksdb_options_destroy(options);
  rocksdb_block_based_options_destroy(table);
  rocksdb_cache_destroy(cache);
  if (error) {
    fprintf(stderr, "bench_direct_open: %s\n", error);
    rocksdb_free(error);
    return -1;
  }
  direct_read = rocksdb_readoptions_create();
  direct_write = rocksdb_writeoptions_create();
  return 0;
}

EXPORT int32_t bench_kv_put_direct(uint64_t i) {
  char key[32];
  size_t n = key_for(i, key);
  char *error = NULL;
  rocksdb_put(direct, direct_write, key, n, (const char *)value, sizeof value, &error);
  if (error) {
    rocksdb_free(error);
    return MN_ERR_IO;
  }
  return MN_OK;
}

EXPORT int32_t bench_kv_get_direct(uint64_t i) {
  char key[32];
  size_t n = key_for(i, key), length = 0;
  char *error = NULL;
  char *found = rocksdb_get(direct, direct_read, key, n, &length, &error);
  if (error) {
    rocksdb_free(error);
    return MN_ERR_IO;
  }
  if (!found) return MN_ERR_NOT_FOUND;
  rocksdb_free(found);
  return MN_OK;
}

EXPORT int32_t bench_bus_publish(uint64_t count, uint32_t payload_bytes) {
  uint8_t payload[256] = {0};
  if (payload_bytes > sizeof payload) payload_bytes = sizeof payload;
  for (uint64_t i = 0; i < count; i++) {
    mn_status status = host->bus_publish(ctx, mn_str_from_cstr("bench.messages"), mn_bytes_make(payload, payload_bytes),
                                         NULL);
    if (status != MN_OK) return status;
  }
  return MN_OK;
}

EXPORT uint64_t bench_bus_received(void) { return atomic_load_explicit(&received, memory_order_acquire); }

static void on_message(void *state, const mn_message *message) {
  (void)state;
  (void)message;
  atomic_fetch_add_explicit(&received, 1, memory_order_release);
}

static mn_status on_init(const mn_host_api *h, mn_host_ctx *c, mn_bytes config, void **state) {
  (void)config;
  host = h;
  ctx = c;
  *state = NULL;
  memset(value, 'v', sizeof value);
#ifdef SUBSCRIBE
  mn_subscription_id subscription;
  return host->bus_subscribe(ctx, mn_str_from_cstr("bench.messages"), &subscription);
#else
  return MN_OK;
#endif
}

static const mn_plugin_descriptor descriptor = {
    .struct_size = sizeof(mn_plugin_descriptor),
    .abi_major = MN_ABI_VERSION_MAJOR,
    .abi_minor = MN_ABI_VERSION_MINOR,
    .name = PLUGIN_NAME,
    .version = "1.0.0",
    .on_init = on_init,
    .on_message = on_message,
};

EXPORT const mn_plugin_descriptor *metanode_plugin_entry_v1(void) { return &descriptor; }
