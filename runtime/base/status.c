#include "status.h"

#include <stdio.h>
#include <string.h>

brt_status brt_errf(brt_err *err, brt_status st, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->status = st;
    }
    return st;
}

brt_status brt_err_prefix(brt_err *err, const char *fmt, ...)
{
    if (!err)
        return BRT_ERR_INTERNAL;
    char head[BRT_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    size_t hl = strlen(head), tl = strlen(err->msg);
    if (hl >= sizeof err->msg)
        hl = sizeof err->msg - 1;
    if (hl + tl >= sizeof err->msg)
        tl = sizeof err->msg - 1 - hl;
    memmove(err->msg + hl, err->msg, tl);
    memcpy(err->msg, head, hl);
    err->msg[hl + tl] = '\0';
    return err->status;
}

const char *brt_status_name(brt_status st)
{
    switch (st) {
    case BRT_OK: return "ok";
    case BRT_ERR_INVALID: return "invalid_request";
    case BRT_ERR_IO: return "io_error";
    case BRT_ERR_FORMAT: return "format_error";
    case BRT_ERR_UNSUPPORTED: return "unsupported";
    case BRT_ERR_NOMEM: return "out_of_memory";
    case BRT_ERR_RANGE: return "out_of_range";
    case BRT_ERR_NOT_FOUND: return "not_found";
    case BRT_ERR_COMM: return "communication_error";
    case BRT_ERR_TIMEOUT: return "timeout";
    case BRT_ERR_CAPACITY: return "capacity_exceeded";
    case BRT_ERR_INTERNAL: return "internal_error";
    }
    return "unknown";
}
