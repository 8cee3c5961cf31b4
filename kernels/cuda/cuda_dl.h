/* The cuBLASLt functions the backend calls, through a table filled by dlopen (cuda_dl.cu). */
#ifndef BRT_CUDA_DL_H
#define BRT_CUDA_DL_H

#include <cublasLt.h>

extern "C" {
#include "base/status.h"
}

#define BRT_STR_(x) #x
#define BRT_STR(x) BRT_STR_(x)

typedef struct brt_lt_api {
    int loaded;
    decltype(&::cublasLtCreate) p_cublasLtCreate;
    decltype(&::cublasLtDestroy) p_cublasLtDestroy;
    decltype(&::cublasLtGetStatusString) p_cublasLtGetStatusString;
    decltype(&::cublasLtMatmulDescCreate) p_cublasLtMatmulDescCreate;
    decltype(&::cublasLtMatmulDescDestroy) p_cublasLtMatmulDescDestroy;
    decltype(&::cublasLtMatmulDescSetAttribute) p_cublasLtMatmulDescSetAttribute;
    decltype(&::cublasLtMatrixLayoutCreate) p_cublasLtMatrixLayoutCreate;
    decltype(&::cublasLtMatrixLayoutDestroy) p_cublasLtMatrixLayoutDestroy;
    decltype(&::cublasLtMatmulPreferenceCreate) p_cublasLtMatmulPreferenceCreate;
    decltype(&::cublasLtMatmulPreferenceDestroy) p_cublasLtMatmulPreferenceDestroy;
    decltype(&::cublasLtMatmulPreferenceSetAttribute) p_cublasLtMatmulPreferenceSetAttribute;
    decltype(&::cublasLtMatmulAlgoGetHeuristic) p_cublasLtMatmulAlgoGetHeuristic;
    decltype(&::cublasLtMatmulAlgoCheck) p_cublasLtMatmulAlgoCheck;
    decltype(&::cublasLtMatmul) p_cublasLtMatmul;
} brt_lt_api;

extern brt_lt_api brt_lt;
extern "C" brt_status brt_cuda_load_lt(brt_err *err);

#endif
