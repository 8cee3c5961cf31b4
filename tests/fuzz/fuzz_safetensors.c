/* A safetensors file (brt_st_set_open_file takes a path and memory-maps it): the u64 header
 * length, the JSON header, and every tensor's dtype, shape and byte range checked against the
 * file; then token ids read from every integer tensor, as `--input-ids` does. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "fuzz_util.h"
#include "model/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_file("model.safetensors", data, size);
    if (!path)
        return 0;
    brt_st_set set;
    brt_err e;
    brt_err_clear(&e);
    if (brt_st_set_open_file(path, &set, &e) != BRT_OK) {
        FUZZ_CHECK(e.msg[0] != '\0');
        return 0;
    }
    FUZZ_CHECK(set.n_files == 1);
    const brt_st_file *f = set.files[0];
    const uint8_t *lo = (const uint8_t *)f->map + 8, *hi = (const uint8_t *)f->map + f->size;
    for (size_t i = 0; i < f->n; i++) {
        const brt_st_tensor *t = &f->tensors[i];
        /* "a header that lies is an error": what was accepted lies inside the mapping, and its
         * byte count is what dtype and shape need */
        FUZZ_CHECK(t->ndim >= 0 && t->ndim <= BRT_ST_MAX_DIMS);
        FUZZ_CHECK(t->nbytes == (size_t)t->numel * brt_dtype_size(t->dtype));
        FUZZ_CHECK((const uint8_t *)t->data >= lo && (const uint8_t *)t->data + t->nbytes <= hi);
        FUZZ_CHECK(brt_st_set_find(&set, t->name) == t);
        int32_t *ids = NULL;
        size_t n_ids = 0;
        if (brt_st_read_ids(t, &ids, &n_ids, &e) == BRT_OK)
            FUZZ_CHECK(n_ids == (size_t)t->numel && ids != NULL);
        free(ids);
    }
    brt_st_set_close(&set);
    return 0;
}
