/* The MPI transport: host buffers, non-blocking sends, bounded receives.
 *
 * A message is an envelope (tag, header and payload lengths, chunk count) followed by its bytes
 * in chunks of at most BRT_MPI_CHUNK bytes (MPI counts are int: one call moves < 2 GiB). Two
 * messages from one rank arrive in order (MPI's non-overtaking rule per source and tag). While
 * waiting, a receive polls with a short sleep that backs off, so a waiting rank does not steal
 * the cores its neighbours compute on. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_* */
#include <errno.h>
#include <sched.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "cluster/transport.h"

#define TAG_ENV 100
#define TAG_DATA 101
#define ENV_MAGIC 0x42525431u /* "BRT1" */

typedef struct env {
    uint32_t magic;
    int32_t tag;
    uint64_t hdr_len, payload_len;
    uint32_t n_chunks, pad;
    uint64_t chunk;       /* the sender's chunk size */
} env;

#define MAX_MESSAGE ((uint64_t)1 << 40) /* bytes: far above any real micro-batch */

typedef struct pending {
    MPI_Request *reqs;
    int n;
    void *buf;
    env e;
} pending;

typedef struct mpi_t {
    brt_transport t;
    size_t chunk;
    pending *pend;
    int n_pend, cap_pend;
} mpi_t;

static const char *const k_launch_vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", NULL};

int brt_mpi_launched(void)
{
    for (const char *const *v = k_launch_vars; *v; v++)
        if (getenv(*v))
            return 1;
    return 0;
}

static void progress(mpi_t *m)
{
    for (int i = 0; i < m->n_pend;) {
        int done = 0;
        MPI_Testall(m->pend[i].n, m->pend[i].reqs, &done, MPI_STATUSES_IGNORE);
        if (done) {
            free(m->pend[i].buf);
            free(m->pend[i].reqs);
            m->pend[i] = m->pend[--m->n_pend];
        } else
            i++;
    }
}

static brt_status mpi_send(brt_transport *t, int32_t dst, int32_t tag, void *hdr, size_t hdr_len, void *payload,
                           size_t payload_len, brt_err *err)
{
    mpi_t *m = (mpi_t *)t;
    size_t total = hdr_len + payload_len;
    char *buf = malloc(total + sizeof(env));
    if (!buf) {
        free(hdr);
        free(payload);
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory sending %zu bytes to rank %d", total, dst);
    }
    /* envelope first, then header and payload back to back */
    env *e = (env *)buf;
    *e = (env){ENV_MAGIC, tag, hdr_len, payload_len, (uint32_t)((total + m->chunk - 1) / m->chunk), 0, m->chunk};
    if (hdr_len)
        memcpy(buf + sizeof(env), hdr, hdr_len);
    if (payload_len)
        memcpy(buf + sizeof(env) + hdr_len, payload, payload_len);
    free(hdr);
    free(payload);
    if (m->n_pend == m->cap_pend) {
        int cap = m->cap_pend ? m->cap_pend * 2 : 16;
        pending *np = realloc(m->pend, (size_t)cap * sizeof *np);
        if (!np) {
            free(buf);
            return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
        }
        m->pend = np;
        m->cap_pend = cap;
    }
    pending *p = &m->pend[m->n_pend];
    p->n = 1 + (int)e->n_chunks;
    p->reqs = malloc((size_t)p->n * sizeof *p->reqs);
    p->buf = buf;
    if (!p->reqs) {
        free(buf);
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    }
    int rc = MPI_Isend(buf, (int)sizeof(env), MPI_BYTE, dst, TAG_ENV, MPI_COMM_WORLD, &p->reqs[0]);
    for (uint32_t c = 0; rc == MPI_SUCCESS && c < e->n_chunks; c++) {
        size_t off = (size_t)c * m->chunk, n = total - off < m->chunk ? total - off : m->chunk;
        rc = MPI_Isend(buf + sizeof(env) + off, (int)n, MPI_BYTE, dst, TAG_DATA, MPI_COMM_WORLD, &p->reqs[1 + c]);
    }
    if (rc != MPI_SUCCESS) {
        free(p->reqs);
        free(buf);
        return brt_errf(err, BRT_ERR_COMM, "rank %d: MPI_Isend to rank %d failed (%d)", t->rank, dst, rc);
    }
    m->n_pend++;
    progress(m);
    return BRT_OK;
}

static void nap(long *ns)
{
    struct timespec ts = {0, *ns};
    nanosleep(&ts, NULL);
    if (*ns < 1000000)
        *ns *= 2;
}

static brt_status mpi_recv(brt_transport *t, brt_msg *msg, double timeout, int *got, brt_err *err)
{
    mpi_t *m = (mpi_t *)t;
    *got = 0;
    memset(msg, 0, sizeof *msg);
    double end = brt_now() + timeout;
    long ns = 20000;
    for (;;) {
        progress(m);
        int flag = 0;
        MPI_Status st;
        MPI_Iprobe(MPI_ANY_SOURCE, TAG_ENV, MPI_COMM_WORLD, &flag, &st);
        if (flag) {
            env e;
            int src = st.MPI_SOURCE;
            MPI_Recv(&e, (int)sizeof e, MPI_BYTE, src, TAG_ENV, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            if (e.magic != ENV_MAGIC)
                return brt_errf(err, BRT_ERR_COMM, "rank %d sent a message without beaconrt's envelope", src);
            /* never trust a peer's sizes: they must describe one consistent message */
            if (e.hdr_len > MAX_MESSAGE || e.payload_len > MAX_MESSAGE || e.chunk != m->chunk ||
                e.n_chunks != (e.hdr_len + e.payload_len + m->chunk - 1) / m->chunk)
                return brt_errf(err, BRT_ERR_COMM,
                                "rank %d sent an inconsistent envelope (%llu + %llu bytes in %u chunks of %llu; this "
                                "rank uses chunks of %zu: BRT_MPI_CHUNK_BYTES must be the same on every rank)",
                                src, (unsigned long long)e.hdr_len, (unsigned long long)e.payload_len, e.n_chunks,
                                (unsigned long long)e.chunk, m->chunk);
            size_t total = e.hdr_len + e.payload_len;
            char *buf = malloc(total ? total : 1);
            if (!buf)
                return brt_errf(err, BRT_ERR_NOMEM, "out of memory receiving %zu bytes from rank %d", total, src);
            for (uint32_t c = 0; c < e.n_chunks; c++) {
                size_t off = (size_t)c * m->chunk, n = total - off < m->chunk ? total - off : m->chunk;
                MPI_Recv(buf + off, (int)n, MPI_BYTE, src, TAG_DATA, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            }
            *msg = (brt_msg){src, e.tag, buf, buf, e.hdr_len, e.payload_len ? buf + e.hdr_len : NULL, e.payload_len};
            *got = 1;
            return BRT_OK;
        }
        if (brt_now() >= end)
            return BRT_OK;
        nap(&ns);
    }
}

static brt_status mpi_flush(brt_transport *t, double timeout, brt_err *err)
{
    mpi_t *m = (mpi_t *)t;
    double end = brt_now() + timeout;
    long ns = 20000;
    while (m->n_pend) {
        progress(m);
        if (!m->n_pend)
            break;
        if (brt_now() >= end)
            return brt_errf(err, BRT_ERR_TIMEOUT, "rank %d: %d sends still pending after %.0fs", t->rank, m->n_pend,
                            timeout);
        nap(&ns);
    }
    return BRT_OK;
}

static void mpi_abort(brt_transport *t, int code)
{
    fflush(stdout);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
    _exit(code);
}

static void mpi_destroy(brt_transport *t)
{
    mpi_t *m = (mpi_t *)t;
    brt_err e;
    mpi_flush(t, 30, &e);
    free(m->pend);
    free(m);
    MPI_Finalize();
}

int32_t brt_affinity_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int32_t)n : 1;
}

/* The CPUs this rank's threads should use: ranks bound to their own cores (mpirun's default binding,
 * Slurm's task affinity) keep their affinity; ranks that share one set (--bind-to none, a job's
 * cgroup without binding) split it. Collective over the node's ranks. */
static int32_t shared_cpus(MPI_Comm node, int32_t local_size)
{
    cpu_set_t own;
    CPU_ZERO(&own);
    if (sched_getaffinity(0, sizeof own, &own) != 0 || CPU_COUNT(&own) == 0)
        return brt_affinity_cpus() / (local_size > 0 ? local_size : 1);
    cpu_set_t *all = calloc((size_t)local_size, sizeof *all); /* [local_size] every local rank's set */
    if (!all || MPI_Allgather(&own, (int)sizeof own, MPI_BYTE, all, (int)sizeof own, MPI_BYTE, node) != MPI_SUCCESS) {
        free(all);
        return CPU_COUNT(&own) / local_size > 0 ? CPU_COUNT(&own) / local_size : 1;
    }
    int32_t sharing = 0;
    for (int32_t r = 0; r < local_size; r++) {
        cpu_set_t both;
        CPU_AND(&both, &own, &all[r]);
        sharing += CPU_COUNT(&both) > 0;
    }
    free(all);
    const int32_t cpus = CPU_COUNT(&own) / (sharing > 0 ? sharing : 1);
    return cpus > 0 ? cpus : 1;
}

brt_status brt_mpi_transport_create(int *argc, char ***argv, brt_transport **out, brt_err *err)
{
    *out = NULL;
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return brt_errf(err, BRT_ERR_COMM, "MPI_Init failed");
    int rank = 0, world = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    /* the launcher's promise: a broken launch (srun without --mpi=pmix, a wrong PMI) gives N
     * copies of a world of one; refuse instead of running the job N times */
    const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS", NULL};
    for (const char **v = vars; *v; v++) {
        const char *s = getenv(*v);
        if (!s || (!strcmp(*v, "SLURM_NTASKS") && !getenv("SLURM_STEP_ID")))
            continue; /* SLURM_NTASKS in a batch script is the allocation, not this launch */
        if (!strcmp(*v, "SLURM_NTASKS") && getenv("OMPI_COMM_WORLD_SIZE"))
            continue; /* mpirun inside an allocation: Open MPI's own count wins */
        long want = strtol(s, NULL, 10);
        if (want > 0 && want != world) {
            brt_errf(err, BRT_ERR_COMM,
                     "the launcher started %ld tasks (%s) but MPI sees a world of %d: a broken launch (with srun use "
                     "--mpi=pmix); refusing to run %ld independent copies",
                     want, *v, world, want);
            MPI_Finalize();
            return BRT_ERR_COMM;
        }
    }
    mpi_t *m = calloc(1, sizeof *m);
    if (!m) {
        MPI_Finalize();
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    }
    m->chunk = (size_t)1 << 30;
    const char *cs = getenv("BRT_MPI_CHUNK_BYTES"); /* tests force small chunks */
    if (cs && strtol(cs, NULL, 10) > 0 && strtol(cs, NULL, 10) <= (1L << 30))
        m->chunk = (size_t)strtol(cs, NULL, 10);
    m->t = (brt_transport){rank, world, "mpi", mpi_send, mpi_recv, mpi_flush, mpi_abort, mpi_destroy, 0, 1, 1, ""};
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &m->t.local_rank);
    MPI_Comm_size(node, &m->t.local_size);
    m->t.cpus = shared_cpus(node, m->t.local_size);
    MPI_Comm_free(&node);
    gethostname(m->t.host, sizeof m->t.host - 1);
    *out = &m->t;
    return BRT_OK;
}
