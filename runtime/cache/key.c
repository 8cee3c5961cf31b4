#include "cache/key.h"

#include <sodium.h>
#include <string.h>

_Static_assert(sizeof(crypto_generichash_state) <= sizeof(((brt_key_chain *)0)->st), "brt_key_chain too small");

void brt_key_chain_init(brt_key_chain *c, const brt_cache_key *settings)
{
    crypto_generichash_state *s = (crypto_generichash_state *)c->st;
    crypto_generichash_init(s, NULL, 0, BRT_KEY_BYTES);
    crypto_generichash_update(s, settings->b, BRT_KEY_BYTES);
}

void brt_key_chain_step(brt_key_chain *c, const brt_step *st)
{
    crypto_generichash_state *s = (crypto_generichash_state *)c->st;
    const int32_t head[] = {st->n_rows, st->n_raw, st->ratio, st->k, st->keep, st->span, st->sink_take,
                            (int32_t)(st->flags & ~(uint32_t)BRT_STEP_FAILED), st->expect_sink, st->expect_mem,
                            st->expect_raw, (int32_t)st->index};
    crypto_generichash_update(s, (const unsigned char *)head, sizeof head);
    if (st->n_rows > 0) {
        crypto_generichash_update(s, (const unsigned char *)st->tokens, (size_t)st->n_rows * sizeof *st->tokens);
        crypto_generichash_update(s, (const unsigned char *)st->pos, (size_t)st->n_rows * sizeof *st->pos);
        crypto_generichash_update(s, st->kind, (size_t)st->n_rows);
    }
}

brt_cache_key brt_key_chain_key(const brt_key_chain *c)
{
    brt_key_chain copy = *c; /* finalising consumes the state */
    brt_cache_key k;
    crypto_generichash_final((crypto_generichash_state *)copy.st, k.b, BRT_KEY_BYTES);
    return k;
}

brt_cache_key brt_key_settings(const void *data, size_t len)
{
    brt_cache_key k;
    if (sodium_init() < 0) { /* it picks the fastest BLAKE2b for this CPU; without, the reference one works */
    }
    static const unsigned char domain[] = "beaconrt state image v1";
    crypto_generichash_state s;
    crypto_generichash_init(&s, NULL, 0, BRT_KEY_BYTES);
    crypto_generichash_update(&s, domain, sizeof domain);
    crypto_generichash_update(&s, data, len);
    crypto_generichash_final(&s, k.b, BRT_KEY_BYTES);
    return k;
}

void brt_key_hex(const brt_cache_key *k, char out[2 * BRT_KEY_BYTES + 1])
{
    static const char d[] = "0123456789abcdef";
    for (int i = 0; i < BRT_KEY_BYTES; i++) {
        out[2 * i] = d[k->b[i] >> 4];
        out[2 * i + 1] = d[k->b[i] & 15];
    }
    out[2 * BRT_KEY_BYTES] = '\0';
}

int brt_key_equal(const brt_cache_key *a, const brt_cache_key *b) { return memcmp(a->b, b->b, BRT_KEY_BYTES) == 0; }

uint64_t brt_key_u64(const brt_cache_key *k)
{
    uint64_t v;
    memcpy(&v, k->b, sizeof v);
    return v && v != UINT64_MAX ? v : 1; /* the map reserves 0 and all ones */
}
