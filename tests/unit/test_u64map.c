/* brt_u64map, the scheduler's job and in-flight micro-batch index:
 *  - put/get/del/iterate agree with a plain array model under random churn;
 *  - a map that adds and deletes forever (one entry per micro-batch in flight) keeps a table
 *    bounded by its live entries instead of doubling at every tombstone rebuild. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "base/u64map.h"

static void test_churn_keeps_the_table_bounded(void **s)
{
    (void)s;
    brt_u64map m;
    brt_u64map_init(&m);
    uint64_t next = 1;
    /* 8 live entries, a million add/delete cycles: the table must stay small */
    for (int i = 0; i < 8; i++, next++)
        assert_int_equal(brt_u64map_put(&m, next, (void *)(uintptr_t)next), 0);
    size_t max_cap = 0;
    for (int i = 0; i < 1000000; i++) {
        assert_non_null(brt_u64map_del(&m, next - 8));
        assert_int_equal(brt_u64map_put(&m, next, (void *)(uintptr_t)next), 0);
        next++;
        if (m.cap > max_cap)
            max_cap = m.cap;
    }
    assert_int_equal(m.n, 8);
    assert_true(max_cap <= 64);
    for (uint64_t k = next - 8; k < next; k++)
        assert_ptr_equal(brt_u64map_get(&m, k), (void *)(uintptr_t)k);
    assert_null(brt_u64map_get(&m, next - 9));
    brt_u64map_free(&m);
}

static void test_matches_an_array_model(void **s)
{
    (void)s;
    enum { K = 4096 };
    static void *model[K + 1];
    brt_u64map m;
    brt_u64map_init(&m);
    srand(7);
    for (int i = 0; i < 200000; i++) {
        uint64_t k = 1 + (uint64_t)(rand() % K);
        if (rand() % 3) {
            void *v = (void *)(uintptr_t)(i + 1);
            assert_int_equal(brt_u64map_put(&m, k, v), 0);
            model[k] = v;
        } else {
            assert_ptr_equal(brt_u64map_del(&m, k), model[k]);
            model[k] = NULL;
        }
    }
    size_t live = 0;
    for (uint64_t k = 1; k <= K; k++) {
        assert_ptr_equal(brt_u64map_get(&m, k), model[k]);
        live += model[k] != NULL;
    }
    assert_int_equal(m.n, live);
    size_t seen = 0, it = 0;
    uint64_t k;
    void *v;
    while (brt_u64map_next(&m, &it, &k, &v)) {
        assert_ptr_equal(v, model[k]);
        seen++;
    }
    assert_int_equal(seen, live);
    brt_u64map_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_churn_keeps_the_table_bounded),
        cmocka_unit_test(test_matches_an_array_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
