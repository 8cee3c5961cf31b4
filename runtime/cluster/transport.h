/* Moving messages between ranks. A message is a small header (protobuf bytes) plus an optional
 * payload (hidden states). Sends are non-blocking: the transport owns the buffers it is given
 * and frees them when the send completes, so compute overlaps communication. Receives wait at
 * most `timeout` seconds, never forever. The MPI transport is the one implementation now; an
 * NCCL one (GPU payloads) fits the same table. */
#ifndef BRT_TRANSPORT_H
#define BRT_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

enum brt_msg_tag {
    BRT_TAG_MB = 1,       /* a micro-batch header (+ hidden states after stage 0) */
    BRT_TAG_RESULTS = 2,  /* last stage -> coordinator */
    BRT_TAG_SHUTDOWN = 3, /* coordinator -> pipeline: finish and exit */
    BRT_TAG_ABORT = 4,    /* a rank failed: everyone exits */
    BRT_TAG_TRACE = 5,    /* per-rank timings, at shutdown */
    BRT_TAG_HELLO = 6,    /* start-up handshake: same model, same grid */
    BRT_TAG_HEARTBEAT = 7,/* coordinator -> ranks while they have nothing to do */
    BRT_TAG_LINK = 8,     /* coordinator -> ranks after the handshake: the pipeline's device link */
};

typedef struct brt_msg {
    int32_t src, tag;
    void *buf;            /* one allocation holding header then payload; free(buf) when done */
    const void *hdr;
    size_t hdr_len;
    const void *payload;  /* NULL when empty */
    size_t payload_len;
} brt_msg;

typedef struct brt_transport brt_transport;
struct brt_transport {
    int32_t rank, world;
    const char *name;
    /* Queue a message; takes ownership of hdr and payload (freed after completion). */
    brt_status (*send)(brt_transport *t, int32_t dst, int32_t tag, void *hdr, size_t hdr_len, void *payload,
                       size_t payload_len, brt_err *err);
    /* Receive the next message from any rank; *got = 0 when none arrived within timeout
     * seconds (0 = just poll). Sends make progress meanwhile. */
    brt_status (*recv)(brt_transport *t, brt_msg *m, double timeout, int *got, brt_err *err);
    /* Wait until every queued send has completed (or timeout). */
    brt_status (*flush)(brt_transport *t, double timeout, brt_err *err);
    /* Bring the whole job down (after printing why). Does not return. */
    void (*abort)(brt_transport *t, int code);
    void (*destroy)(brt_transport *t);
    int32_t local_rank, local_size; /* ranks on this node (shared memory) */
    int32_t cpus;                   /* CPUs for this rank's threads: its affinity (what Slurm's cgroup,
                                       --cpus-per-task and mpirun's binding give), divided among the
                                       ranks of the node whose affinity overlaps it */
    char host[64];
};

/* CPUs this process may run on (sched_getaffinity; the online count if that fails). */
int32_t brt_affinity_cpus(void);

/* True when an MPI launcher (mpirun, srun --mpi=pmix) started this process. */
int brt_mpi_launched(void);
/* MPI_Init and checks: the world size must be what the launcher promised (SLURM_NTASKS,
 * OMPI_COMM_WORLD_SIZE), else N copies of rank 0 would each run the whole job. */
brt_status brt_mpi_transport_create(int *argc, char ***argv, brt_transport **out, brt_err *err);

#endif
