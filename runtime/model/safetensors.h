/* safetensors files: memory-mapped read (nothing copied) with a strict header check, and a
 * small writer for outputs (logits). A set of files (sharded checkpoint) is looked up by name.
 *
 * Layout: u64 LE header length N, N bytes of JSON {name: {dtype, shape, data_offsets:[b,e]}},
 * then the data; offsets are relative to the end of the header. */
#ifndef BRT_SAFETENSORS_H
#define BRT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "base/dtype.h"
#include "base/status.h"
#include "base/strmap.h"


#define BRT_ST_MAX_DIMS 8

typedef struct brt_st_tensor {
    const char *name;
    brt_dtype dtype;
    int ndim;
    int64_t shape[BRT_ST_MAX_DIMS];
    int64_t numel;
    const void *data;   /* points into the mapping */
    size_t nbytes;
    const char *path;   /* file it lives in (for messages) */
} brt_st_tensor;

typedef struct brt_st_file {
    char *path;
    void *map;          /* whole file, PROT_READ, MAP_PRIVATE */
    size_t size;
    size_t n;
    brt_st_tensor *tensors;
    char *names;        /* storage for tensor names */
} brt_st_file;

/* Open and validate one file. Every tensor's dtype, shape and byte range is checked against
 * the file; a header that lies is an error naming the file and tensor. */
brt_status brt_st_open(const char *path, brt_st_file **out, brt_err *err);
void brt_st_close(brt_st_file *f);

/* A set of files with one name space (a sharded checkpoint, or one file). */
typedef struct brt_st_set {
    brt_st_file **files;
    size_t n_files;
    brt_strmap by_name; /* name -> brt_st_tensor* */
} brt_st_set;

/* Open the weights of a Hugging Face folder: model.safetensors, or the shards named by
 * model.safetensors.index.json (each tensor must be in the shard the index names). */
brt_status brt_st_set_open_dir(const char *dir, brt_st_set *set, brt_err *err);
/* Open a single file as a set (also for path "FILE"). */
brt_status brt_st_set_open_file(const char *path, brt_st_set *set, brt_err *err);
void brt_st_set_close(brt_st_set *set);
const brt_st_tensor *brt_st_set_find(const brt_st_set *set, const char *name);
/* The whole pages of [p, p + bytes) leave the process's resident memory if they lie in one of the
 * set's mappings (a backend computes from its own copy); touched again, they are read from the
 * file (the page cache) as before. Elsewhere: nothing. */
void brt_st_set_release(const brt_st_set *set, const void *p, size_t bytes);

/* Write a file. Tensors are written in sorted-name order; data is raw little-endian. */
typedef struct brt_st_out_tensor {
    const char *name;
    brt_dtype dtype;
    int ndim;
    int64_t shape[BRT_ST_MAX_DIMS];
    const void *data;
} brt_st_out_tensor;
brt_status brt_st_write(const char *path, const brt_st_out_tensor *t, size_t n, brt_err *err);

/* Read an integer tensor (I64 or I32) shaped [1, L] or [L] as int32 token ids. */
brt_status brt_st_read_ids(const brt_st_tensor *t, int32_t **ids, size_t *n, brt_err *err);

#endif
