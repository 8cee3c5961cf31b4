/* cuBLASLt loaded when the CUDA backend starts, not when the program starts: a beaconrt built with
 * CUDA runs on machines without the CUDA libraries (CPU ranks, login nodes) and its start costs
 * nothing when no GPU is used (the library is half a gigabyte). */
#include <dlfcn.h>
#include <stdio.h>

#include "cuda/cuda_dl.h"

brt_lt_api brt_lt;

extern "C" brt_status brt_cuda_load_lt(brt_err *err)
{
    if (brt_lt.loaded)
        return BRT_OK;
    static const char *names[] = {"libcublasLt.so." BRT_STR(CUBLAS_VER_MAJOR), "libcublasLt.so", NULL};
    void *h = NULL;
    for (const char **n = names; *n && !h; n++)
        h = dlopen(*n, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return brt_errf(err, BRT_ERR_UNSUPPORTED,
                        "--device cuda: cannot load cuBLASLt (%s): put the CUDA %d toolkit's lib64 on LD_LIBRARY_PATH",
                        dlerror(), CUBLAS_VER_MAJOR);
#define SYM(f)                                                                                               \
    do {                                                                                                     \
        *(void **)&brt_lt.p_##f = dlsym(h, #f);                                                                  \
        if (!brt_lt.p_##f)                                                                                       \
            return brt_errf(err, BRT_ERR_UNSUPPORTED, "--device cuda: cuBLASLt lacks %s (too old?)", #f);    \
    } while (0)
    SYM(cublasLtCreate);
    SYM(cublasLtDestroy);
    SYM(cublasLtGetStatusString);
    SYM(cublasLtMatmulDescCreate);
    SYM(cublasLtMatmulDescDestroy);
    SYM(cublasLtMatmulDescSetAttribute);
    SYM(cublasLtMatrixLayoutCreate);
    SYM(cublasLtMatrixLayoutDestroy);
    SYM(cublasLtMatmulPreferenceCreate);
    SYM(cublasLtMatmulPreferenceDestroy);
    SYM(cublasLtMatmulPreferenceSetAttribute);
    SYM(cublasLtMatmulAlgoGetHeuristic);
    SYM(cublasLtMatmulAlgoCheck);
    SYM(cublasLtMatmul);
#undef SYM
    brt_lt.loaded = 1;
    return BRT_OK;
}
