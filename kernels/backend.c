/* Choosing a backend at run time: --device cpu|cuda (or a preset's resources.device). */
#include <stdio.h>
#include <string.h>

#include "kernels.h"

#ifndef BRT_HAVE_CUDA
brt_status brt_cuda_backend_create(int gpu, const char *precision, brt_backend **out, brt_err *err)
{
    *out = NULL;
    return brt_errf(err, BRT_ERR_UNSUPPORTED,
                    "--device cuda: this beaconrt was built without the CUDA backend (no nvcc when it was built, or "
                    "-DBRT_CUDA=OFF); rebuild on a machine with the CUDA toolkit");
}
int brt_cuda_device_count(void) { return 0; }
#endif

const char *brt_backend_devices(void)
{
#ifdef BRT_HAVE_CUDA
    return "cpu, cuda";
#else
    return "cpu";
#endif
}

int brt_backend_gpu_count(void) { return brt_cuda_device_count(); }

brt_status brt_backend_create(const brt_backend_opts *o, brt_backend **out, brt_err *err)
{
    *out = NULL;
    const char *dev = o->device && *o->device ? o->device : "cpu";
    if (!strcmp(dev, "cpu")) {
        if (o->precision && *o->precision && strcmp(o->precision, "f32"))
            return brt_errf(err, BRT_ERR_INVALID, "--precision %s: the CPU backend computes in f32 only", o->precision);
        return brt_cpu_backend_create(o->n_threads, o->isa, out, err);
    }
    if (!strcmp(dev, "cuda")) {
        if (o->isa && *o->isa)
            return brt_errf(err, BRT_ERR_INVALID, "--isa applies to --device cpu only");
        return brt_cuda_backend_create(o->gpu, o->precision, out, err);
    }
    return brt_errf(err, BRT_ERR_INVALID, "--device %s: unknown device (this build has: %s)", dev,
                    brt_backend_devices());
}

int64_t brt_check_copy_rows(const brt_run *dst, int32_t n_dst, const brt_run *src, int32_t n_src, brt_err *err)
{
    const int64_t n = brt_runs_rows(dst, n_dst), m = brt_runs_rows(src, n_src);
    if (n != m) {
        brt_errf(err, BRT_ERR_INTERNAL, "copy_rows: %lld destination rows for %lld source rows", (long long)n,
                 (long long)m);
        return -1;
    }
    return n;
}

brt_status brt_check_embed_ids(const brt_weight *table, int has_alt, const int32_t *ids, int64_t n, brt_err *err)
{
    for (int64_t i = 0; i < n; i++)
        if (ids[i] >= table->rows || ids[i] < BRT_EMBED_ZERO || (ids[i] == BRT_EMBED_ALT && !has_alt))
            return brt_errf(err, BRT_ERR_RANGE, "embed: row %lld asks for id %d of a %lld-row table", (long long)i,
                            ids[i], (long long)table->rows);
    return BRT_OK;
}
