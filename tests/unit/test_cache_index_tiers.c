/* The state-cache index's device tier (runtime/cache/index.c), which the scheduler asks before it
 * keeps a state there:
 *  - device copies count per pipeline and stage, confirmed ones at their size and pending ones at
 *    what was set aside; another pipeline's copies take none of this one's room;
 *  - fits() with a need says whether that much more stays within the budget on every stage;
 *  - victim() with a need picks the least recently used confirmed copy of that pipeline, never a
 *    pending or pinned one, and nothing when the need already fits;
 *  - could_fit() says whether moving out every copy that may go would make the room, so the
 *    scheduler does not empty the tier in vain;
 *  - an entry is ready on a pipeline from its device copy, not while a save is pending. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "cache/index.h"

static brt_cache_key key_of(uint8_t b)
{
    brt_cache_key k;
    memset(k.b, b, sizeof k.b);
    return k;
}

static brt_cache_index *index_of(void)
{
    static const int32_t layers[3] = {0, 2, 4};
    brt_cache_index_opts o = {.n_pipelines = 2, .n_stages = 2, .stage_layers = layers, .dev_budget = 100,
                              .host_budget = 1000, .settings = key_of(0x5e)};
    brt_cache_index *x = NULL;
    brt_err e;
    memset(&e, 0, sizeof e);
    assert_int_equal(brt_cache_index_create(&o, &x, &e), BRT_OK);
    assert_true(brt_cache_index_dev(x) && brt_cache_index_host(x) && !brt_cache_index_disk(x));
    return x;
}

/* an entry with a device copy of (b0, b1) bytes on pipeline p: confirmed, or pending */
static brt_cache_entry *on_dev(brt_cache_index *x, uint8_t id, int32_t p, int64_t b0, int64_t b1, int pending)
{
    const brt_cache_key k = key_of(id);
    brt_cache_entry *e = brt_cache_index_get(x, &k);
    if (!e)
        e = brt_cache_index_add(x, &k, 1, 64);
    assert_non_null(e);
    e->dev_bytes[0] = b0;
    e->dev_bytes[1] = b1;
    if (pending)
        e->dev_pending |= 1u << p;
    else
        e->dev |= 1u << p;
    brt_cache_index_account(x);
    return e;
}

static void test_device_copies_count_per_pipeline_and_stage(void **s)
{
    (void)s;
    brt_cache_index *x = index_of();
    on_dev(x, 1, 0, 60, 10, 0);
    on_dev(x, 2, 0, 30, 5, 1); /* pending: counted at what was set aside */
    assert_int_equal(brt_cache_index_dev_bytes(x, 0, 0), 90);
    assert_int_equal(brt_cache_index_dev_bytes(x, 0, 1), 15);
    assert_int_equal(brt_cache_index_dev_bytes(x, 1, 0), 0);
    assert_int_equal(brt_cache_index_host_bytes(x, 0, 0), 0);
    const int64_t small[2] = {10, 10}, big[2] = {11, 0};
    assert_true(brt_cache_index_fits(x, BRT_TIER_DEVICE, 0, small));
    assert_false(brt_cache_index_fits(x, BRT_TIER_DEVICE, 0, big)); /* 90 + 11 on stage 0 */
    assert_true(brt_cache_index_fits(x, BRT_TIER_DEVICE, 1, big));  /* pipeline 1 holds nothing */
    brt_cache_index_destroy(x);
}

static void test_victims_are_confirmed_unpinned_and_least_recently_used(void **s)
{
    (void)s;
    brt_cache_index *x = index_of();
    brt_cache_entry *old = on_dev(x, 1, 0, 30, 0, 0);
    brt_cache_entry *newer = on_dev(x, 2, 0, 30, 0, 0);
    on_dev(x, 3, 0, 30, 0, 1); /* pending */
    brt_cache_index_touch(x, newer);
    const int64_t need[2] = {20, 0};
    assert_null(brt_cache_index_victim(x, BRT_TIER_DEVICE, 0, NULL)); /* 90 of 100: within */
    assert_ptr_equal(brt_cache_index_victim(x, BRT_TIER_DEVICE, 0, need), old);
    old->pins = 1; /* a load in flight */
    assert_ptr_equal(brt_cache_index_victim(x, BRT_TIER_DEVICE, 0, need), newer);
    newer->pins = 1;
    assert_null(brt_cache_index_victim(x, BRT_TIER_DEVICE, 0, need)); /* only the pending one is left */
    assert_null(brt_cache_index_victim(x, BRT_TIER_DEVICE, 1, need)); /* another pipeline's room */
    brt_cache_index_destroy(x);
}

static void test_could_fit_counts_only_copies_that_may_go(void **s)
{
    (void)s;
    brt_cache_index *x = index_of();
    brt_cache_entry *pinned = on_dev(x, 1, 0, 50, 0, 0);
    pinned->pins = 1;
    on_dev(x, 2, 0, 30, 0, 1); /* pending */
    on_dev(x, 3, 0, 10, 0, 0); /* may go */
    const int64_t n20[2] = {20, 0}, n21[2] = {21, 0}, n5[2] = {5, 0};
    assert_true(brt_cache_index_fits(x, BRT_TIER_DEVICE, 0, n5)); /* 90 + 5 */
    assert_false(brt_cache_index_fits(x, BRT_TIER_DEVICE, 0, n20));
    assert_true(brt_cache_index_could_fit(x, BRT_TIER_DEVICE, 0, n20));  /* 90 - 10 + 20 */
    assert_false(brt_cache_index_could_fit(x, BRT_TIER_DEVICE, 0, n21)); /* 90 - 10 + 21 */
    pinned->pins = 0;
    assert_true(brt_cache_index_could_fit(x, BRT_TIER_DEVICE, 0, n21)); /* 90 - 60 + 21 */
    brt_cache_index_destroy(x);
}

static void test_ready_from_a_device_copy_not_while_pending(void **s)
{
    (void)s;
    brt_cache_index *x = index_of();
    brt_cache_entry *e = on_dev(x, 1, 0, 10, 10, 0);
    assert_true(brt_cache_entry_ready(e, 0));
    assert_false(brt_cache_entry_ready(e, 1));
    on_dev(x, 1, 1, 10, 10, 1);
    assert_false(brt_cache_entry_ready(e, 0)); /* a save of it is in flight */
    e->dev_pending = 0;
    e->dev = 0;
    brt_cache_index_account(x);
    assert_int_equal(brt_cache_index_dev_bytes(x, 0, 0), 0);
    assert_false(brt_cache_entry_ready(e, 0));
    brt_cache_index_destroy(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_device_copies_count_per_pipeline_and_stage),
        cmocka_unit_test(test_victims_are_confirmed_unpinned_and_least_recently_used),
        cmocka_unit_test(test_could_fit_counts_only_copies_that_may_go),
        cmocka_unit_test(test_ready_from_a_device_copy_not_while_pending),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
