/* NCCL between the stages of a pipeline: hidden states go GPU to GPU. NCCL is loaded when a link is
 * made (dlopen), the communicator is made non-blocking with a deadline, sends and receives run on
 * the backend's stream (so the next micro-batch cannot overwrite a buffer still being sent), and
 * every wait on that stream is watched (brt_cuda_wait): an asynchronous NCCL error or no progress
 * within the timeout aborts the communicator and names the peers, never a hang. */
#include <dlfcn.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cuda/cuda_impl.h"

static struct {
    int loaded;
    decltype(&::ncclGetUniqueId) get_unique_id;
    decltype(&::ncclCommInitRankConfig) init_rank_config;
    decltype(&::ncclCommGetAsyncError) get_async_error;
    decltype(&::ncclCommAbort) abort;
    decltype(&::ncclCommDestroy) destroy;
    decltype(&::ncclSend) send;
    decltype(&::ncclRecv) recv;
    decltype(&::ncclGetErrorString) error_string;
} nc;

static brt_status load_nccl(brt_err *err)
{
    if (nc.loaded)
        return BRT_OK;
    void *h = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!h)
        h = dlopen("libnccl.so", RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return brt_errf(err, BRT_ERR_UNSUPPORTED, "NCCL is not installed here (%s); set BRT_NCCL=0 to move hidden states "
                                                  "through MPI",
                        dlerror());
#define SYM(f, name)                                                                                      \
    do {                                                                                                  \
        *(void **)&nc.f = dlsym(h, name);                                                                 \
        if (!nc.f)                                                                                        \
            return brt_errf(err, BRT_ERR_UNSUPPORTED, "the NCCL found here lacks %s (need 2.19 or newer)", name); \
    } while (0)
    SYM(get_unique_id, "ncclGetUniqueId");
    SYM(init_rank_config, "ncclCommInitRankConfig");
    SYM(get_async_error, "ncclCommGetAsyncError");
    SYM(abort, "ncclCommAbort");
    SYM(destroy, "ncclCommDestroy");
    SYM(send, "ncclSend");
    SYM(recv, "ncclRecv");
    SYM(error_string, "ncclGetErrorString");
#undef SYM
    nc.loaded = 1;
    return BRT_OK;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static brt_status link_fail(cuda_impl *ci, brt_err *err, const char *what)
{
    char who[512] = "";
    size_t n = 0;
    for (int i = 0; i < ci->link_n && n < sizeof who - 64; i++)
        if (i != ci->link_me)
            n += (size_t)snprintf(who + n, sizeof who - n, "%s%s", n ? ", " : "", ci->link_names[i]);
    if (ci->comm) {
        nc.abort((ncclComm_t)ci->comm); /* never leave a half-dead communicator behind */
        ci->comm = NULL;
    }
    return brt_errf(err, BRT_ERR_COMM, "GPU %d: NCCL link to %s: %s", ci->dev, who[0] ? who : "its peers", what);
}

/* Poll until the communicator's pending call finished (non-blocking mode), within the deadline. */
static brt_status settle(cuda_impl *ci, double deadline, brt_err *err)
{
    for (;;) {
        ncclResult_t state;
        if (nc.get_async_error((ncclComm_t)ci->comm, &state) != ncclSuccess)
            return link_fail(ci, err, "cannot query the communicator");
        if (state == ncclSuccess)
            return BRT_OK;
        if (state != ncclInProgress) {
            char m[256];
            snprintf(m, sizeof m, "%s", nc.error_string(state));
            return link_fail(ci, err, m);
        }
        if (now_s() > deadline)
            return link_fail(ci, err, "no progress before the deadline (a peer is stuck or gone; --timeout)");
        usleep(100);
    }
}

brt_status brt_cuda_wait(brt_backend *be, brt_err *err)
{
    cuda_impl *ci = cuda_of(be);
    if (!ci->comm) {
        CU_TRY(cudaStreamSynchronize(ci->stream));
        return BRT_OK;
    }
    /* a send or receive may be queued: watch it */
    const double t0 = now_s();
    for (int spins = 0;; spins++) {
        cudaError_t q = cudaStreamQuery(ci->stream);
        if (q == cudaSuccess)
            return BRT_OK;
        if (q != cudaErrorNotReady)
            return brt_cuda_fail(err, ci->dev, cudaGetErrorString(q), "cudaStreamQuery", __FILE__, __LINE__);
        ncclResult_t state;
        if (nc.get_async_error((ncclComm_t)ci->comm, &state) == ncclSuccess && state != ncclSuccess &&
            state != ncclInProgress) {
            char m[256];
            snprintf(m, sizeof m, "%s", nc.error_string(state));
            return link_fail(ci, err, m);
        }
        if (now_s() - t0 > ci->link_timeout) {
            char m[128];
            snprintf(m, sizeof m, "no progress in %.0fs (a peer is stuck or gone; --timeout)", ci->link_timeout);
            return link_fail(ci, err, m);
        }
        if (spins > 64)
            usleep(50);
    }
}

static brt_status cu_link_id(brt_backend *be, void *id, size_t *len, brt_err *err)
{
    BRT_TRY(load_nccl(err));
    ncclUniqueId u;
    ncclResult_t r = nc.get_unique_id(&u);
    if (r != ncclSuccess)
        return brt_errf(err, BRT_ERR_COMM, "NCCL cannot make a link id: %s", nc.error_string(r));
    memcpy(id, &u, sizeof u);
    *len = sizeof u;
    return BRT_OK;
}

static brt_status cu_link_join(brt_backend *be, const void *id, size_t len, int n, int me, const char *const *names,
                               double timeout, brt_err *err)
{
    cuda_impl *ci = cuda_of(be);
    BRT_TRY(load_nccl(err));
    if (len != sizeof(ncclUniqueId))
        return brt_errf(err, BRT_ERR_COMM, "NCCL link id of %zu bytes (this NCCL uses %zu)", len, sizeof(ncclUniqueId));
    ci->link_n = n < BRT_LINK_MAX ? n : BRT_LINK_MAX;
    ci->link_me = me;
    ci->link_timeout = timeout > 0 ? timeout : 600;
    for (int i = 0; i < ci->link_n; i++)
        snprintf(ci->link_names[i], sizeof ci->link_names[i], "%s", names[i]);
    ncclUniqueId u;
    memcpy(&u, id, sizeof u);
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
    ncclComm_t comm = NULL;
    ncclResult_t r = nc.init_rank_config(&comm, n, u, me, &cfg);
    ci->comm = comm;
    if (r != ncclSuccess && r != ncclInProgress) {
        char m[256];
        snprintf(m, sizeof m, "cannot join (%s)", nc.error_string(r));
        return link_fail(ci, err, m);
    }
    return settle(ci, now_s() + ci->link_timeout, err);
}

/* rows to or from a member of the link (send: 1) */
static brt_status link_move(brt_backend *be, brt_mat m, int64_t rows, int64_t cols, int peer, int send, brt_err *err)
{
    cuda_impl *ci = cuda_of(be);
    if (!ci->comm)
        return brt_errf(err, BRT_ERR_INTERNAL, "GPU %d: no NCCL link", ci->dev);
    if (m.ld != cols || m.dtype != BRT_DT_F32)
        return brt_errf(err, BRT_ERR_INTERNAL, "NCCL %s of strided or non-f32 rows", send ? "send" : "receive");
    const size_t count = (size_t)(rows * cols);
    ncclResult_t r = send ? nc.send(dptr(m), count, ncclFloat32, peer, (ncclComm_t)ci->comm, ci->stream)
                          : nc.recv(dptr(m), count, ncclFloat32, peer, (ncclComm_t)ci->comm, ci->stream);
    if (r != ncclSuccess && r != ncclInProgress) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s failed (%s)", send ? "send" : "receive", nc.error_string(r));
        return link_fail(ci, err, msg);
    }
    return settle(ci, now_s() + ci->link_timeout, err);
}

static brt_status cu_link_send(brt_backend *be, brt_mat src, int64_t rows, int64_t cols, int peer, brt_err *err)
{
    return link_move(be, src, rows, cols, peer, 1, err);
}

static brt_status cu_link_recv(brt_backend *be, brt_mat dst, int64_t rows, int64_t cols, int peer, brt_err *err)
{
    return link_move(be, dst, rows, cols, peer, 0, err);
}

void brt_cuda_link_close(cuda_impl *ci)
{
    if (ci->comm && nc.loaded) {
        ncclResult_t state = ncclSuccess;
        nc.get_async_error((ncclComm_t)ci->comm, &state);
        if (state == ncclSuccess)
            nc.destroy((ncclComm_t)ci->comm);
        else
            nc.abort((ncclComm_t)ci->comm);
    }
    ci->comm = NULL;
}

void brt_cuda_set_link_ops(brt_backend *be)
{
    be->link_id = cu_link_id;
    be->link_join = cu_link_join;
    be->link_send = cu_link_send;
    be->link_recv = cu_link_recv;
}
