/* The backend interface: memory a backend owns and every operation of a forward pass, as one
 * table of functions per device (kernels/cpu, kernels/cuda). Learnt from ggml-backend: code above
 * kernels/ holds buffers and views into them (brt_mat) and never touches activations, KV state or
 * logits through pointers; it asks the backend to set, get, copy, gather and compute. The same
 * policies and the one forward pass (runtime/engine/stage.c) run unchanged on every backend.
 *
 * Contract shared by all backends (tests/ops checks each against the plain-C reference):
 *  - activations f32; weights f32, f16 or bf16; KV state f32 or bf16; accumulation in f32;
 *  - a row's result never depends on the other rows computed with it (micro-batch packing must not
 *    change any job's numbers): no reduction is split across rows in a way that depends on the
 *    batch, and each output element has one fixed summation order (the CPU backend keeps this to
 *    the bit; cuBLASLt may choose algorithms per shape, see docs/architecture.md);
 *  - every op returns a status and fills err on failure; ops may run asynchronously (CUDA streams):
 *    get_rows and logit_rows return only when their host outputs are written;
 *  - host arrays passed to an op (positions, ids, descriptors) may be reused once the op returns. */
#ifndef BRT_KERNELS_H
#define BRT_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "base/dtype.h"
#include "base/status.h"

typedef struct brt_backend brt_backend;

/* ---- memory ---------------------------------------------------------------------------- */

enum brt_mem_kind {
    BRT_MEM_DEVICE = 0,   /* where the backend computes (host memory for the CPU backend) */
    BRT_MEM_HOST = 1,     /* host memory the device reaches fast (pinned on CUDA) */
};

/* A block of memory a backend allocated. base is an address in the backend's space (a device
 * pointer on CUDA): code above kernels/ only offsets it, through brt_mat. */
typedef struct brt_buffer {
    brt_backend *be;
    void *base;
    size_t size;
    int kind;             /* brt_mem_kind */
    void *ctx;            /* the backend's own bookkeeping */
} brt_buffer;

/* Rows of a matrix in a buffer: row r starts off + r * ld elements into the buffer. */
typedef struct brt_mat {
    brt_buffer *buf;
    int64_t off;          /* bytes from the buffer's base to row 0 */
    int64_t ld;           /* elements between consecutive rows */
    brt_dtype dtype;      /* F32 or BF16 (weights also F16) */
} brt_mat;

static inline brt_mat brt_mat_make(brt_buffer *b, int64_t off, int64_t ld, brt_dtype dt)
{
    brt_mat m = {b, off, ld, dt};
    return m;
}
/* The view starting r rows further down. */
static inline brt_mat brt_mat_row(brt_mat m, int64_t r)
{
    m.off += r * m.ld * (int64_t)brt_dtype_size(m.dtype);
    return m;
}
/* The view starting c elements further right (a head, a column block). */
static inline brt_mat brt_mat_col(brt_mat m, int64_t c)
{
    m.off += c * (int64_t)brt_dtype_size(m.dtype);
    return m;
}

/* n consecutive rows of a view: the unit of gathers and scatters. */
typedef struct brt_run {
    brt_mat m;
    int32_t n;
} brt_run;

static inline int64_t brt_runs_rows(const brt_run *runs, int32_t n_runs)
{
    int64_t c = 0;
    for (int32_t i = 0; i < n_runs; i++)
        c += runs[i].n;
    return c;
}

/* Bumped whenever a kernel's arithmetic changes (a summation order, a rounding): state cached by
 * an earlier build is then keyed apart instead of giving other bits than a fresh reading.
 * 2: the CPU GEMM's one fused multiply-add chain per output over k in order. */
#define BRT_KERNELS_NUMERICS 2u

/* A weight matrix [rows, cols] = [out, in] (y = x W^T), or a vector (rows = 1). data is the host
 * copy (memory-mapped checkpoint, or the f32 norm vectors); weight_upload makes it usable by a
 * backend's kernels and records where in dev (the CUDA backend's device copy; the CPU backend's
 * packed panels of a GEMM weight, reading vectors and lookup tables from data itself). */
typedef struct brt_weight {
    const void *data;     /* NULL = absent */
    brt_dtype dtype;      /* F32, F16 or BF16 */
    int64_t rows, cols;
    const char *name;     /* for messages */
    const void *dev;      /* backend copy: CUDA's device copy; the CPU backend's packed panels
                           * (BRT_CPU_PANEL rows interleaved: [ceil(rows / 16)][cols][16], dtype kept) */
    brt_dtype dev_dtype;  /* its dtype (the backend may convert, e.g. f32 -> bf16 for GEMMs) */
    int lookup_only;      /* never a GEMM's weights (an embedding table read by rows): the CPU
                           * backend leaves it where it lies */
} brt_weight;

/* ---- RoPE ---------------------------------------------------------------------------- */

/* Rotate-half RoPE on heads of head_dim: row i is rotated at angle p_i * inv_freq[j] with
 * p_i = (float)pos_i / pos_div (pos_div = 1: no division; linear scaling divides). */
typedef struct brt_rope {
    brt_mat inv_freq;     /* [head_dim / 2] f32, in the backend's memory */
    int32_t head_dim;
    float pos_div;
} brt_rope;

/* ---- attention ------------------------------------------------------------------------- */

/* A run of stored key/value slots (or this step's own rows): slot i of K at row i of k, each slot
 * n_kv_heads * head_dim values (head-major). */
typedef struct brt_kv_span {
    brt_mat k, v;         /* F32 or BF16; K and V share dtype and ld (checked) */
    int32_t n;
} brt_kv_span;

/* Keys one query row may see: up to 3 half-open intervals of key index (the virtual
 * concatenation of a segment's spans). */
#define BRT_ATTN_MAX_INTERVALS 3
typedef struct brt_attn_vis {
    int32_t lo[BRT_ATTN_MAX_INTERVALS], hi[BRT_ATTN_MAX_INTERVALS];
    int32_t n;
} brt_attn_vis;

/* One job's query rows against that job's keys. */
typedef struct brt_attn_seg {
    brt_mat q;                 /* [rows, n_heads * head_dim] f32, post-RoPE */
    brt_mat out;               /* [rows, n_heads * head_dim] f32 */
    int32_t rows;
    const brt_kv_span *spans;  /* host array: keys in order */
    int32_t n_spans;
    int32_t n_keys;            /* sum of spans' n */
    const brt_attn_vis *vis;   /* host array [rows] */
} brt_attn_seg;

typedef struct brt_attn_args {
    const brt_attn_seg *segs;
    int32_t n_segs;
    int32_t n_heads, n_kv_heads, head_dim;
    float scale_div;           /* scores = (q . k) / scale_div, i.e. sqrt(head_dim) */
} brt_attn_args;

/* ---- logits to results ------------------------------------------------------------------ */

#define BRT_TOP_K_MAX 20

typedef struct brt_tok_lp {
    int32_t token;
    float logprob;
} brt_tok_lp;

/* What one logits row asks for. Draws are a pure function of (seed, draw): a job samples the
 * same tokens whatever rank, batch or backend runs it (given the same logits). */
typedef struct brt_logit_req {
    int32_t target;            /* token whose log-probability is wanted, -1 = none */
    int32_t top_k;             /* most likely tokens wanted, 0..BRT_TOP_K_MAX */
    int32_t sample;            /* 1: draw the next token */
    float temperature, top_p;  /* temperature <= 0: greedy */
    uint64_t seed, draw;
} brt_logit_req;

typedef struct brt_logit_out {
    int32_t sampled;           /* with sample */
    float sampled_logprob;
    float target_logprob;      /* NaN without a target (or one out of range) */
    brt_tok_lp top[BRT_TOP_K_MAX];
} brt_logit_out;

/* Ids of embed's rows that are not token ids. */
#define BRT_EMBED_ALT (-1)     /* the alternative table's row 0 (the beacon embedding) */
#define BRT_EMBED_ZERO (-2)    /* zeros (a failed job's rows) */

/* ---- the table --------------------------------------------------------------------------- */

struct brt_backend {
    const char *name;          /* "cpu-avx512", "cpu-avx2", "cpu-generic", "cuda:0 (NVIDIA H100 ...)" */
    const char *device;        /* "cpu" or "cuda" */
    int n_threads;             /* CPU kernel threads (1 on CUDA: one host thread drives it) */
    brt_dtype state_dtype;     /* what KV state is kept in: F32, or BF16 (CUDA's bf16 mode) */
    int64_t min_alloc;         /* a good size for pool chunks (bytes) */
    int64_t held;              /* bytes of device memory held now (weights, buffers, workspaces; CUDA) */
    void *impl;

    /* memory */
    brt_status (*buffer_alloc)(brt_backend *be, size_t bytes, int kind, brt_buffer **out, brt_err *err);
    void (*buffer_free)(brt_backend *be, brt_buffer *b);
    /* make w usable by this backend's kernels (upload, dtype for the GEMMs); aliases of one host
     * tensor share one copy */
    brt_status (*weight_upload)(brt_backend *be, brt_weight *w, brt_err *err);
    /* bytes free and in all where the backend computes */
    void (*memory)(brt_backend *be, int64_t *free_bytes, int64_t *total_bytes);
    /* host [rows, cols] (packed, dst's dtype) -> dst */
    brt_status (*set_rows)(brt_backend *be, brt_mat dst, const void *src, int64_t rows, int64_t cols,
                           brt_err *err);
    /* src -> host [rows, cols] (packed, src's dtype); returns when dst is written */
    brt_status (*get_rows)(brt_backend *be, brt_mat src, void *dst, int64_t rows, int64_t cols, brt_err *err);
    /* Gather/scatter: row i of the concatenated dst runs <- row i of the concatenated src runs (as
     * many rows in both), cols elements each, converted to dst's dtype. With rope, each row is
     * rotated (from its f32 value) at position pos[i] (pos NULL: pos0 + i) before conversion.
     * All sources are read before any destination is written (runs may overlap). */
    brt_status (*copy_rows)(brt_backend *be, const brt_run *dst, int32_t n_dst, const brt_run *src, int32_t n_src,
                            int64_t cols, const brt_rope *rope, const int32_t *pos, int32_t pos0, brt_err *err);
    /* dst[rows, cols] = 0 */
    brt_status (*zero_rows)(brt_backend *be, brt_mat dst, int64_t rows, int64_t cols, brt_err *err);
    /* wait for everything queued */
    brt_status (*synchronize)(brt_backend *be, brt_err *err);

    /* compute (activations f32) */
    /* c[m, w.rows] = a[m, w.cols] . w^T (+ bias[w.rows] when bias && bias->data) */
    brt_status (*gemm)(brt_backend *be, brt_mat a, int64_t m, const brt_weight *w, const brt_weight *bias,
                       brt_mat c, brt_err *err);
    /* y = w * (x * rsqrt(mean(x^2) + eps)) per row; y may equal x */
    brt_status (*rmsnorm)(brt_backend *be, brt_mat x, const brt_weight *w, float eps, brt_mat y, int64_t rows,
                          int64_t dim, brt_err *err);
    /* RoPE in place on rows of `heads` heads, row i at position pos[i] (host array) */
    brt_status (*rope)(brt_backend *be, brt_mat x, int64_t rows, int32_t heads, const brt_rope *rope,
                       const int32_t *pos, brt_err *err);
    /* softmax(q k^T / scale_div, restricted to each row's visible keys) v per segment, fp32 */
    brt_status (*attention)(brt_backend *be, const brt_attn_args *a, brt_err *err);
    /* gate = silu(gate) * up over rows of n */
    brt_status (*silu_mul)(brt_backend *be, brt_mat gate, brt_mat up, int64_t rows, int64_t n, brt_err *err);
    /* y += x */
    brt_status (*add)(brt_backend *be, brt_mat y, brt_mat x, int64_t rows, int64_t n, brt_err *err);
    /* out[i] = table[ids[i]] as f32 (ids: host array; BRT_EMBED_ALT: alt's row 0; BRT_EMBED_ZERO) */
    brt_status (*embed)(brt_backend *be, const brt_weight *table, const brt_weight *alt, const int32_t *ids,
                        int64_t n, brt_mat out, brt_err *err);
    /* logits[m, V] = x[m, dim] . lm_head^T (the gemm, kept apart so a backend may fuse it) */
    brt_status (*logits)(brt_backend *be, brt_mat x, int64_t m, const brt_weight *lm_head, brt_mat out,
                         brt_err *err);
    /* Per logits row [vocab]: what req[i] asks (log-probability of the target, the top-k, a draw),
     * into out[i] (host); returns when out is written. Log-probabilities are logit - logsumexp in
     * double precision. */
    brt_status (*logit_rows)(brt_backend *be, brt_mat logits, int64_t n, int32_t vocab, const brt_logit_req *req,
                             brt_logit_out *out, brt_err *err);

    /* Device links between the stages of a pipeline (NCCL on CUDA; NULL where a backend has none).
     * The group's first member makes an id (link_id) that reaches the others by other means (MPI);
     * every member joins with it (link_join, a deadline on the collective set-up); a stage sends
     * its rows to the next and receives from the previous (peer: member index). Every wait on a
     * link is watched: a member that fails or makes no progress within the timeout aborts the link
     * with an error naming it (names[member]), never a hang. */
    brt_status (*link_id)(brt_backend *be, void *id, size_t *len, brt_err *err);
    brt_status (*link_join)(brt_backend *be, const void *id, size_t len, int n_members, int me,
                            const char *const *names, double timeout, brt_err *err);
    brt_status (*link_send)(brt_backend *be, brt_mat src, int64_t rows, int64_t cols, int peer, brt_err *err);
    brt_status (*link_recv)(brt_backend *be, brt_mat dst, int64_t rows, int64_t cols, int peer, brt_err *err);
    void (*destroy)(brt_backend *be);
};

#define BRT_LINK_ID_MAX 256  /* bytes of a link id */

/* Which backend, and how. */
typedef struct brt_backend_opts {
    const char *device;        /* "cpu" (default) or "cuda" */
    int n_threads;             /* CPU: kernel threads (<= 0: one per CPU this process may run on) */
    const char *isa;           /* CPU: NULL = best this CPU supports, else "avx512", "avx2", "generic" */
    int gpu;                   /* CUDA: device index (the node picks local rank % devices) */
    const char *precision;     /* CUDA: "bf16" (default: bf16 GEMMs and state) or "f32" (TF32 off) */
} brt_backend_opts;

brt_status brt_backend_create(const brt_backend_opts *o, brt_backend **out, brt_err *err);
/* Devices this build can create ("cpu", and "cuda" when built with it) as one string. */
const char *brt_backend_devices(void);
/* GPUs visible to this process (0 without CUDA support or a driver). */
int brt_backend_gpu_count(void);

/* The CPU backend (kernels/cpu): n_threads <= 0 means one per CPU of the process's affinity. */
brt_status brt_cpu_backend_create(int n_threads, const char *isa, brt_backend **out, brt_err *err);
/* The CUDA backend (kernels/cuda), when built. */
brt_status brt_cuda_backend_create(int gpu, const char *precision, brt_backend **out, brt_err *err);
int brt_cuda_device_count(void);

/* Argument checks every backend makes (kernels/backend.c): copy_rows moves as many rows as it
 * reads (returns that count, or -1 with err set); embed's ids are rows of the table or the two
 * special ids (alt must then exist: has_alt). */
int64_t brt_check_copy_rows(const brt_run *dst, int32_t n_dst, const brt_run *src, int32_t n_src, brt_err *err);
brt_status brt_check_embed_ids(const brt_weight *table, int has_alt, const int32_t *ids, int64_t n, brt_err *err);

/* A buffer and a view over it, for the common case of one matrix. */
static inline brt_mat brt_buffer_mat(brt_buffer *b, int64_t ld, brt_dtype dt) { return brt_mat_make(b, 0, ld, dt); }

#endif
