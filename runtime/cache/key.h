/* State-cache keys: what a job's long-context state after some steps depends on, as a 128-bit
 * BLAKE2b digest. The state a stage holds after a step is a deterministic function of the model
 * and settings (config, state dtype, backend) and of every step's rows so far (tokens, positions,
 * kinds) and policy instructions (ratio, beacons, flags, expected sizes), whatever other jobs
 * shared the micro-batches. So a key chains exactly those: equal keys mean equal state, and any
 * decision that makes a prefix's state depend on what follows (an adaptive ratio chosen from the
 * whole length) is in the steps, so such a prefix simply gets another key. A collision-resistant
 * hash, so that no request can be made to reuse another's state. */
#ifndef BRT_CACHE_KEY_H
#define BRT_CACHE_KEY_H

#include <stddef.h>
#include <stdint.h>

#include "engine/step.h"

#define BRT_KEY_BYTES 16

typedef struct brt_cache_key {
    uint8_t b[BRT_KEY_BYTES];
} brt_cache_key;

/* The running digest of a job's steps (opaque state, copyable by value). */
typedef struct brt_key_chain {
    _Alignas(64) uint8_t st[384];
} brt_key_chain;

/* Start a chain from the settings digest. */
void brt_key_chain_init(brt_key_chain *c, const brt_cache_key *settings);
/* Add one planned step (what moves state: rows and instructions, not sampling or logits). */
void brt_key_chain_step(brt_key_chain *c, const brt_step *st);
/* The key of the steps so far (the chain goes on unchanged). */
brt_cache_key brt_key_chain_key(const brt_key_chain *c);
/* The settings digest: any bytes that decide the numbers (the model config struct, the state
 * dtype, the backend's name). */
brt_cache_key brt_key_settings(const void *data, size_t len);
/* 32 hex digits (and a NUL) for file names and logs. */
void brt_key_hex(const brt_cache_key *k, char out[2 * BRT_KEY_BYTES + 1]);
int brt_key_equal(const brt_cache_key *a, const brt_cache_key *b);
uint64_t brt_key_u64(const brt_cache_key *k); /* the first 8 bytes: a hash-map key */

#endif
