/* beaconrt status codes and per-call error buffers.
 *
 * Every function that can fail returns brt_status (BRT_OK = 0) and, on failure, writes a
 * message with enough context to act on (file, tensor, line, rank, job) into the caller's
 * brt_err. Library code never exits; only main() decides what a failure means. */
#ifndef BRT_STATUS_H
#define BRT_STATUS_H

#include <stdarg.h>
#include <stddef.h>

typedef enum brt_status {
    BRT_OK = 0,
    BRT_ERR_INVALID,     /* bad argument or bad user input (flags, JSON fields, ids) */
    BRT_ERR_IO,          /* open/read/write/mmap failed */
    BRT_ERR_FORMAT,      /* a file is malformed (safetensors, config, tokenizer, JSONL) */
    BRT_ERR_UNSUPPORTED, /* a valid setting this runtime does not implement */
    BRT_ERR_NOMEM,       /* allocation failed */
    BRT_ERR_RANGE,       /* a value out of its allowed range (token id, length) */
    BRT_ERR_NOT_FOUND,   /* a named thing is missing (tensor, file, key) */
    BRT_ERR_COMM,        /* transport failure between ranks */
    BRT_ERR_TIMEOUT,     /* a wait ran past its limit */
    BRT_ERR_CAPACITY,    /* does not fit the memory budget */
    BRT_ERR_INTERNAL     /* a broken invariant: a bug in beaconrt */
} brt_status;

#define BRT_ERR_MSG_MAX 1024

typedef struct brt_err {
    brt_status status;
    char msg[BRT_ERR_MSG_MAX];
} brt_err;

/* Record a failure: formats the message into err (may be NULL) and returns st. */
brt_status brt_errf(brt_err *err, brt_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepend context ("file X: ") to a message already in err; returns err->status. */
brt_status brt_err_prefix(brt_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Short stable name of a status, e.g. "format" (used in JSON error codes). */
const char *brt_status_name(brt_status st);

static inline void brt_err_clear(brt_err *err)
{
    if (err) {
        err->status = BRT_OK;
        err->msg[0] = '\0';
    }
}

/* Return early from the enclosing function when a call fails. */
#define BRT_TRY(expr)                          \
    do {                                       \
        brt_status brt_try_st_ = (expr);       \
        if (brt_try_st_ != BRT_OK)             \
            return brt_try_st_;                \
    } while (0)

#endif
