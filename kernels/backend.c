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
