/* Batch input files: OpenAI-Batch JSONL, read whole, bad lines kept aside with their ids. */
#include "api/batch_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/text.h"
#include "base/strmap.h"

void brt_batch_free(brt_batch *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n; i++)
        brt_request_free(&b->reqs[i]);
    for (size_t i = 0; i < b->n_bad; i++) {
        free(b->bad[i].custom_id);
        free(b->bad[i].message);
    }
    free(b->reqs);
    free(b->bad);
    memset(b, 0, sizeof *b);
}

typedef struct {
    brt_batch *b;
    size_t cap_reqs, cap_bad;
    brt_strmap ids; /* custom_id -> the line that claimed it */
} reader;

static int push_req(reader *rd, brt_request *r)
{
    brt_batch *b = rd->b;
    if (b->n == rd->cap_reqs) {
        size_t cap = rd->cap_reqs ? rd->cap_reqs * 2 : 64;
        brt_request *p = realloc(b->reqs, cap * sizeof *p);
        if (!p)
            return -1;
        b->reqs = p;
        rd->cap_reqs = cap;
    }
    b->reqs[b->n++] = *r;
    memset(r, 0, sizeof *r);
    return 0;
}

/* Takes ownership of custom_id (NULL: a synthetic id is given after the whole file is read). */
static int push_bad(reader *rd, size_t line_no, char *custom_id, brt_status st, const char *msg)
{
    brt_batch *b = rd->b;
    if (b->n_bad == rd->cap_bad) {
        size_t cap = rd->cap_bad ? rd->cap_bad * 2 : 16;
        struct brt_batch_bad *p = realloc(b->bad, cap * sizeof *p);
        if (!p) {
            free(custom_id);
            return -1;
        }
        b->bad = p;
        rd->cap_bad = cap;
    }
    char *m = strdup(msg);
    if (!m) {
        free(custom_id);
        return -1;
    }
    b->bad[b->n_bad++] = (struct brt_batch_bad){line_no, custom_id, st, m};
    return 0;
}

/* Runs after the whole file is read, so that a real id anywhere in the file wins over a
 * synthetic one and ids stay a function of the input alone. */
static int assign_synthetic_ids(reader *rd)
{
    brt_batch *b = rd->b;
    char buf[64];
    for (size_t i = 0; i < b->n_bad; i++) {
        if (b->bad[i].custom_id)
            continue;
        snprintf(buf, sizeof buf, "line-%zu", b->bad[i].line_no);
        for (unsigned k = 2; brt_strmap_get(&rd->ids, buf, NULL); k++)
            snprintf(buf, sizeof buf, "line-%zu#%u", b->bad[i].line_no, k);
        if (brt_strmap_put(&rd->ids, buf, (intptr_t)b->bad[i].line_no) != 0)
            return -1;
        b->bad[i].custom_id = strdup(buf);
        if (!b->bad[i].custom_id)
            return -1;
    }
    return 0;
}

static int handle_line(reader *rd, const char *p, size_t len, size_t line_no)
{
    brt_request r;
    brt_err e;
    brt_err_clear(&e);
    brt_status st = brt_batch_parse_line(p, len, line_no, &r, &e);
    if (st == BRT_ERR_NOMEM) {
        brt_request_free(&r);
        return -1;
    }
    intptr_t first = 0;
    int taken = r.custom_id && brt_strmap_get(&rd->ids, r.custom_id, &first);
    if (st == BRT_OK && !taken) {
        if (brt_strmap_put(&rd->ids, r.custom_id, (intptr_t)line_no) != 0 || push_req(rd, &r) != 0) {
            brt_request_free(&r);
            return -1;
        }
        return 0;
    }
    if (taken) {
        /* the repeat is reported under a synthetic id: the output may hold each id only once */
        char msg[BRT_ERR_MSG_MAX + 256];
        if (st == BRT_OK)
            snprintf(msg, sizeof msg, "line %zu: custom_id \"%s\" duplicates line %zu", line_no,
                     r.custom_id, (size_t)first);
        else
            snprintf(msg, sizeof msg, "%s (and its custom_id \"%s\" duplicates line %zu)", e.msg,
                     r.custom_id, (size_t)first);
        brt_request_free(&r);
        return push_bad(rd, line_no, NULL, st == BRT_OK ? BRT_ERR_INVALID : st, msg);
    }
    char *id = r.custom_id;
    r.custom_id = NULL;
    brt_request_free(&r);
    if (id && brt_strmap_put(&rd->ids, id, (intptr_t)line_no) != 0) {
        free(id);
        return -1;
    }
    return push_bad(rd, line_no, id, st, e.msg);
}

brt_status brt_batch_read(const char *path, brt_batch *out, brt_err *err)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f)
        return brt_errf(err, BRT_ERR_IO, "batch input %s: cannot open: %s", path, strerror(errno));
    reader rd = {.b = out};
    brt_strmap_init(&rd.ids);
    char *buf = NULL;
    size_t cap = 0, line_no = 0;
    ssize_t got;
    brt_status st = BRT_OK;
    while ((got = getline(&buf, &cap, f)) >= 0) {
        line_no++;
        const char *p = buf;
        size_t len = (size_t)got;
        if (len && p[len - 1] == '\n')
            len--;
        if (len && p[len - 1] == '\r')
            len--;
        if (line_no == 1 && len >= 3 && !memcmp(p, "\xEF\xBB\xBF", 3)) {
            p += 3;
            len -= 3;
        }
        if (brt_is_blank(p, len))
            continue;
        if (handle_line(&rd, p, len, line_no) != 0) {
            st = brt_errf(err, BRT_ERR_NOMEM, "batch input %s: out of memory at line %zu", path,
                          line_no);
            break;
        }
    }
    if (st == BRT_OK && ferror(f))
        st = brt_errf(err, BRT_ERR_IO, "batch input %s: read failed after line %zu: %s", path,
                      line_no, strerror(errno));
    else if (st == BRT_OK && !feof(f))
        st = brt_errf(err, BRT_ERR_NOMEM, "batch input %s: out of memory reading line %zu", path,
                      line_no + 1);
    if (st == BRT_OK && assign_synthetic_ids(&rd) != 0)
        st = brt_errf(err, BRT_ERR_NOMEM, "batch input %s: out of memory", path);
    free(buf);
    fclose(f);
    brt_strmap_free(&rd.ids);
    if (st != BRT_OK)
        brt_batch_free(out);
    return st;
}

