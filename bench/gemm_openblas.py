#!/usr/bin/env python3
"""OpenBLAS's fp32 GEMM at one shape, the bar for beaconrt's CPU GEMM (issue 13).

    gemm_openblas.py M N K [REPS]      -> prints GFLOP/s of c[M,N] = a[M,K] @ w[N,K].T, best of REPS

Run it with the Python of a venv that has numpy from PyPI (its wheel bundles OpenBLAS with the
SkylakeX AVX-512 kernels), with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset and the thread count in
OPENBLAS_NUM_THREADS, under the same CPU affinity as our benchmark (BASELINES.md). bench_kernels
--openblas PYTHON calls it right after timing the same shape; bench/bench_gemm.sh sets it all up.
The weights are laid out as ours, [out, in], and used transposed (no copy: BLAS's trans flag)."""
import sys
import time

import numpy as np


def main():
    m, n, k = (int(x) for x in sys.argv[1:4])
    reps = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    rng = np.random.default_rng(7)
    a = (rng.random((m, k), dtype=np.float32) - 0.5)
    w = (rng.random((n, k), dtype=np.float32) - 0.5)
    c = np.empty((m, n), dtype=np.float32)
    np.matmul(a, w.T, out=c)  # warm-up: threads started, pages touched
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        np.matmul(a, w.T, out=c)
        best = min(best, time.perf_counter() - t0)
    print(f"{2.0 * m * n * k / best / 1e9:.2f}")


if __name__ == "__main__":
    main()
