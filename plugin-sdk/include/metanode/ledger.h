/*
 * metanode/ledger.h — the ledger service BPI exports to module plugins ("bpi.ledger", version 1.4).
 *
 * BPI orders transactions and finalises blocks; modules (BPCI, DockLock, ENC, ...) give transactions meaning. A
 * module looks the service up with the host's `service_lookup` (capability "service"), then registers the
 * transaction kinds it handles: every transaction whose kind is "<module>/<type>" goes to that module's handlers.
 *
 *   const mn_ledger_api *ledger;
 *   host->service_lookup(ctx, mn_str_from_cstr(MN_LEDGER_SERVICE), MN_LEDGER_VERSION_MAJOR, 0,
 *                        (const void **)&ledger, &minor, &size);
 *   ledger->register_module(ledger, &my_module);   // a static mn_ledger_module
 *
 * Threads: handlers run on BPI's executor thread, not the module's, and may run at the same time as the module's own
 *   hooks: they must be thread-safe and must not block. The functions of `mn_ledger_api` other than
 *   `register_module` may be called only from inside a handler, with the `state` it was given.
 * Determinism: every validator runs the same handlers on the same transactions in the same order and must reach the
 *   same state. Handlers must not read the clock, random numbers, files or the network, nor use floating point in
 *   anything they write. The block's timestamp and height come in `mn_ledger_block`.
 * State: each module has its own key space. A module's keys are stored under "<module>/" in the ledger state, which
 *   block headers commit to (`stateRoot`). Writes during a block are buffered and committed with the block. If
 *   `deliver` returns anything but MN_OK, the transaction's writes and events are discarded. It stays in the block
 *   as failed: its nonce is used and its result records the status and reason.
 * Fees: one module may take the fees of every transaction (`charge_fee`, BPCI in the product). BPI calls it for every
 *   transaction but its own kinds ("bpi/...", and "test/..." where the genesis allows them), including kinds no
 *   module handles: at admission (except for the fee module's own kinds, whose
 *   `check` must cover the fee), and in the block before the owner's `deliver`. The fee's writes and events stay
 *   even when the owner's `deliver` then fails. A block with a transaction whose fee cannot be paid is invalid; a
 *   proposer leaves such transactions out. A fee module that sets MN_LEDGER_MODULE_OWN_FEES_IN_DELIVER (1.4) takes the
 *   fee of its own kinds inside their `deliver`: BPI calls its `charge_fee` for them only when that `deliver` fails,
 *   after undoing it, so that the fee stays paid (or, if it cannot be, the transaction is unpayable as above).
 * Versions: 1.1 appended `init_chain` and `charge_fee` to `mn_ledger_module` and `transaction_count` to
 *   `mn_ledger_block`. BPI reads them only when the module's
 *   `struct_size` covers them, so a module built against 1.0 still registers. 1.2 appended `state_read` to
 *   `mn_ledger_api`: a module that may run on a 1.1 BPI calls it only when the table's `struct_size` covers it.
 *   1.4 appended `flags` to `mn_ledger_module`; a BPI before 1.4 does not read it, so a module sets a flag only when
 *   the service's minor version (from `service_lookup`) is 1.4 or later, and otherwise behaves as without it.
 * Ownership: everything passed to a handler is borrowed for that call. `state_get` returns a BPI-owned buffer the
 *   module frees with `buf_free`; `state_read` copies into the module's own memory.
 */
#ifndef METANODE_LEDGER_H
#define METANODE_LEDGER_H

#include "plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MN_LEDGER_SERVICE "bpi.ledger"
#define MN_LEDGER_VERSION_MAJOR 1u
#define MN_LEDGER_VERSION_MINOR 4u  /* 1.3: the per-call write limits below; 1.4: mn_ledger_module.flags */

#define MN_LEDGER_MODULE_NAME_LEN_MAX 32u   /* [a-z0-9_-]; "bpi" and "test" are BPI's own                   */
#define MN_LEDGER_MODULES_MAX 64u
#define MN_LEDGER_KEY_LEN_MAX 1024u          /* a module's key, before the "<module>/" prefix                 */
#define MN_LEDGER_VALUE_LEN_MAX 1048576u
#define MN_LEDGER_REASON_LEN_MAX 256u        /* bytes of a refusal reason kept; longer ones are cut           */
#define MN_LEDGER_EVENTS_PER_TX_MAX 64u
#define MN_LEDGER_EVENT_LEN_MAX 4096u
/* What one transaction's call (deliver, charge_fee) may write: puts and deletes, and the bytes of their keys and
 * values, each counted as written. Past either, state_put and state_delete return MN_ERR_LIMIT. A block's writes
 * together are bounded too (32,768 keys, 16 MiB): these keep any one transaction within that.                  */
#define MN_LEDGER_CALL_WRITES_MAX 4096u
#define MN_LEDGER_CALL_WRITE_BYTES_MAX 4194304u

/* mn_ledger_module.flags (1.4). */
/* The module with `charge_fee` takes the fee of its own kinds in their `deliver`, with the payment, in one call: BPI
 * does not call `charge_fee` before it. When that `deliver` fails, BPI undoes its writes and then calls `charge_fee`
 * alone, so a failed transaction still pays its fee and one whose fee cannot be paid is still unpayable. Ignored on
 * a module without `charge_fee`. */
#define MN_LEDGER_MODULE_OWN_FEES_IN_DELIVER 1u

/** BPI's handle for one handler call. BPI-owned; valid only during the call it is passed to. */
typedef struct mn_ledger_state mn_ledger_state;

/** A transaction, as a handler sees it. Borrowed for the call. */
typedef struct mn_ledger_tx {
  uint32_t struct_size;
  mn_bytes id;        /* 32 bytes: BLAKE2b-256 of "metanode/txid/v1" 0 body (plugin-sdk/docs/wire.md)         */
  mn_bytes sender;    /* 32 bytes: the sender's Ed25519 public key; the signature is already verified          */
  uint64_t nonce;
  uint64_t fee;
  mn_str kind;        /* "<module>/<type>"                                                                     */
  mn_bytes payload;   /* the module's own encoding                                                             */
} mn_ledger_tx;

/** The block being executed. Borrowed for the call. */
typedef struct mn_ledger_block {
  uint32_t struct_size;
  uint64_t height;
  uint64_t timestamp_ms;  /* the proposer's, checked against the parent's by every validator                 */
  mn_bytes proposer;      /* 32 bytes                                                                        */
  /* ---- 1.1 (read only if struct_size covers it) ---- */
  uint64_t transaction_count; /* transactions in the block, of every kind                                    */
} mn_ledger_block;

/** A module's handlers. BPI copies the table (the first `struct_size` bytes) when the module registers; `name` and
 *  `user_data` must stay valid for the life of the process. Optional handlers may be NULL. */
typedef struct mn_ledger_module {
  uint32_t struct_size;
  mn_str name;      /* the "<module>" of the kinds it handles; the string must be static too                   */
  void *user_data;  /* passed back to every handler                                                          */
  /** Admission to the mempool, reading committed state: MN_OK admits; otherwise call `reject` with the reason. */
  mn_status (*check)(void *user_data, mn_ledger_state *state, const mn_ledger_tx *tx);
  /** Execution in a block: reads and writes state, emits events. Required. */
  mn_status (*deliver)(void *user_data, mn_ledger_state *state, const mn_ledger_tx *tx);
  /** Before the block's first transaction, for every registered module in name order. Optional. */
  mn_status (*begin_block)(void *user_data, mn_ledger_state *state, const mn_ledger_block *block);
  /** After the block's last transaction (supply invariants belong here). Non-OK rejects the whole block. Optional. */
  mn_status (*end_block)(void *user_data, mn_ledger_state *state, const mn_ledger_block *block);
  /** A read-only question over committed state (GET /v1/plugins/bpi/query/<module>/<path>); answer with `answer`.
   *  Optional. */
  mn_status (*query)(void *user_data, mn_ledger_state *state, mn_str path, mn_bytes request);
  /* ---- 1.1 ---- */
  /** Once, in the chain's first block (height 1), before any begin_block: sets the module's starting state from its
   *  section of the genesis file (`modules.<name>`, as JSON; "{}" when the genesis has none). Non-OK rejects the
   *  block, so a chain whose genesis a module refuses never starts. A module registered after block 1 starts empty.
   *  A chain whose genesis has module sections makes block 1 at once, so this state exists before any transaction.
   *  Optional. */
  mn_status (*init_chain)(void *user_data, mn_ledger_state *state, mn_str genesis_section);
  /** Charges `tx`'s fee (`tx->fee`, the most its sender pays). With `block` NULL it is admission: committed state,
   *  read-only; refuse a fee the sender cannot pay. In a block it writes and may emit events; a refusal fails the
   *  transaction with nothing written. At most one registered module may have it (MN_ERR_EXISTS otherwise).
   *  Optional. */
  mn_status (*charge_fee)(void *user_data, mn_ledger_state *state, const mn_ledger_tx *tx,
                          const mn_ledger_block *block);
  /* ---- 1.4 ---- */
  /** MN_LEDGER_MODULE_* bits; 0 for none. */
  uint32_t flags;
} mn_ledger_module;

/** The service table. BPI-owned, one per BPI instance, valid for the life of the process. */
typedef struct mn_ledger_api {
  uint32_t struct_size;
  /** Registers `module` (static) with the BPI instance that exported `ledger` (pass the table itself). Any
   *  thread, before or after BPI starts. MN_ERR_EXISTS if the name is taken, MN_ERR_INVALID_ARGUMENT for a bad
   *  name, a reserved name ("bpi", "test") or a missing `deliver`. */
  mn_status (*register_module)(const struct mn_ledger_api *ledger, const mn_ledger_module *module);
  /** The value of the module's `key`, as of the block so far (or committed state in check and query).
   *  MN_ERR_NOT_FOUND if it has none. */
  mn_status (*state_get)(mn_ledger_state *state, mn_bytes key, mn_buf *out_value);
  /** Sets the module's `key`. In deliver, begin_block and end_block only; MN_ERR_DENIED elsewhere. In a
   *  transaction's call, MN_ERR_LIMIT past MN_LEDGER_CALL_WRITES_MAX or MN_LEDGER_CALL_WRITE_BYTES_MAX. A deliver
   *  that returns it fails its transaction (the fee stays paid) and its writes are undone; a charge_fee that
   *  returns it leaves the transaction unpayable, so the proposer drops it. */
  mn_status (*state_put)(mn_ledger_state *state, mn_bytes key, mn_bytes value);
  mn_status (*state_delete)(mn_ledger_state *state, mn_bytes key);
  /** The reason for a refusal, kept with the status (e.g. "insufficient FLX: has 5, needs 7"). */
  void (*reject)(mn_ledger_state *state, mn_str reason);
  /** An event of the transaction being delivered, kept in its result. A type with a dot is namespaced: it must
   *  start with "<module>." (e.g. "bpci.transfer"); another module's prefix is MN_ERR_DENIED. Undotted types
   *  ("added") are free-form. */
  mn_status (*emit_event)(mn_ledger_state *state, mn_str type, mn_bytes data);
  /** The answer of a query. */
  void (*answer)(mn_ledger_state *state, mn_bytes response);
  /** Frees a buffer `state_get` returned. */
  void (*buf_free)(mn_buf buf);
  /* ---- 1.2 (present when struct_size covers it) ---- */
  /** `state_get` into the module's memory: copies the value of `key` to `out` if it fits in `capacity` bytes, and
   *  sets `*out_len` to the value's length. MN_ERR_NOT_FOUND if the key has none (`*out_len` 0). MN_ERR_TOO_LARGE,
   *  with nothing copied, if the value is longer than `capacity` (`*out_len` is then the room it needs) or the key is
   *  longer than MN_LEDGER_KEY_LEN_MAX (`*out_len` 0). For the small values handlers read most (balances,
   *  counters): no allocation and no `buf_free`. `out` may be NULL only when `capacity` is 0 (a question of whether
   *  the key has a value, and how long); `out_len` is required. MN_ERR_INVALID_ARGUMENT otherwise. */
  mn_status (*state_read)(mn_ledger_state *state, mn_bytes key, uint8_t *out, size_t capacity, size_t *out_len);
} mn_ledger_api;

#ifdef __cplusplus
}
#endif

#endif /* METANODE_LEDGER_H */
