/*
 * sign_tx: builds and signs a Metanode transaction in C with libsodium, byte for byte as plugin-sdk/docs/wire.md
 * describes. With no arguments it prints the golden vector's body, signature and id, which
 * Tests/MetanodeWireTests pins as well; with arguments it prints one signed transaction as hex for `metanode chain
 * submit`.
 *
 *   cc -O2 -o sign_tx sign_tx.c -lsodium
 *   ./sign_tx                                           golden vector
 *   ./sign_tx SEED_HEX CHAIN NONCE FEE KIND PAYLOAD     one transaction (payload as text)
 */
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TX_VERSION 1
#define BODY_MAX (1 + 2 + 64 + 32 + 8 + 8 + 2 + 64 + 4 + 65536)

typedef struct {
  uint8_t bytes[BODY_MAX];
  size_t len;
} buffer;

static void put(buffer *b, const void *p, size_t n) {
  memcpy(b->bytes + b->len, p, n);
  b->len += n;
}

static void put_be(buffer *b, uint64_t value, int width) {
  for (int i = width - 1; i >= 0; i--) {
    uint8_t byte = (uint8_t)(value >> (8 * i));
    put(b, &byte, 1);
  }
}

/* string16 / bytes32: a big-endian length, then the bytes. */
static void put_string16(buffer *b, const char *s) {
  put_be(b, strlen(s), 2);
  put(b, s, strlen(s));
}

static void put_bytes32(buffer *b, const void *p, size_t n) {
  put_be(b, n, 4);
  put(b, p, n);
}

static void print_hex(const char *label, const uint8_t *p, size_t n) {
  if (label) printf("%s ", label);
  for (size_t i = 0; i < n; i++) printf("%02x", p[i]);
  printf("\n");
}

/* Signs "metanode/tx/v1" 0 body and computes the id, BLAKE2b-256 of "metanode/txid/v1" 0 body. */
static void sign_body(const buffer *body, const uint8_t secret[64], uint8_t signature[64], uint8_t id[32]) {
  static uint8_t message[sizeof("metanode/txid/v1") + BODY_MAX];
  size_t n = strlen("metanode/tx/v1") + 1;
  memcpy(message, "metanode/tx/v1", n);
  memcpy(message + n, body->bytes, body->len);
  crypto_sign_detached(signature, NULL, message, n + body->len, secret);
  n = strlen("metanode/txid/v1") + 1;
  memcpy(message, "metanode/txid/v1", n);
  memcpy(message + n, body->bytes, body->len);
  crypto_generichash(id, 32, message, n + body->len, NULL, 0);
}

int main(int argc, char **argv) {
  if (sodium_init() < 0) return 1;
  uint8_t seed[32], public_key[32], secret[64], signature[64], id[32];
  const char *chain = "metanode-dev", *kind = "bpci/transfer", *payload = "hello";
  uint64_t nonce = 7, fee = 1000;
  int golden = argc == 1;
  if (golden) {
    for (int i = 0; i < 32; i++) seed[i] = (uint8_t)i;
  } else if (argc == 7) {
    if (sodium_hex2bin(seed, 32, argv[1], strlen(argv[1]), NULL, NULL, NULL) != 0) {
      fprintf(stderr, "SEED_HEX must be 64 hex digits\n");
      return 2;
    }
    chain = argv[2];
    nonce = strtoull(argv[3], NULL, 10);
    fee = strtoull(argv[4], NULL, 10);
    kind = argv[5];
    payload = argv[6];
  } else {
    fprintf(stderr, "usage: %s [SEED_HEX CHAIN NONCE FEE KIND PAYLOAD]\n", argv[0]);
    return 2;
  }
  if (strlen(chain) > 64 || strlen(kind) > 64 || strlen(payload) > 65536) {
    fprintf(stderr, "chain and kind are at most 64 bytes, the payload at most 65536\n");
    return 2;
  }
  crypto_sign_seed_keypair(public_key, secret, seed);

  buffer body = {.len = 0};
  uint8_t version = TX_VERSION;
  put(&body, &version, 1);
  put_string16(&body, chain);
  put(&body, public_key, 32);
  put_be(&body, nonce, 8);
  put_be(&body, fee, 8);
  put_string16(&body, kind);
  put_bytes32(&body, payload, strlen(payload));
  sign_body(&body, secret, signature, id);

  if (golden) {
    print_hex("public-key", public_key, 32);
    print_hex("body", body.bytes, body.len);
    print_hex("signature", signature, 64);
    print_hex("id", id, 32);
  } else {
    for (size_t i = 0; i < body.len; i++) printf("%02x", body.bytes[i]);
    print_hex(NULL, signature, 64);
  }
  sodium_memzero(secret, sizeof secret);
  return 0;
}
