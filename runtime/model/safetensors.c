#include "model/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_HEADER (256u << 20) /* bytes; real headers are KBs to a few MB */

static const struct {
    const char *name;
    size_t size;
} k_dtypes[BRT_DT_COUNT] = {
    [BRT_DT_F32] = {"F32", 4}, [BRT_DT_F16] = {"F16", 2}, [BRT_DT_BF16] = {"BF16", 2},
    [BRT_DT_F64] = {"F64", 8}, [BRT_DT_I64] = {"I64", 8}, [BRT_DT_I32] = {"I32", 4},
    [BRT_DT_I16] = {"I16", 2}, [BRT_DT_I8] = {"I8", 1},   [BRT_DT_U8] = {"U8", 1},
    [BRT_DT_BOOL] = {"BOOL", 1},
};

const char *brt_dtype_name(brt_dtype dt) { return dt < BRT_DT_COUNT ? k_dtypes[dt].name : "?"; }
size_t brt_dtype_size(brt_dtype dt) { return dt < BRT_DT_COUNT ? k_dtypes[dt].size : 0; }

static int parse_dtype(const char *s, brt_dtype *dt)
{
    for (int i = 0; i < BRT_DT_COUNT; i++)
        if (!strcmp(s, k_dtypes[i].name)) {
            *dt = (brt_dtype)i;
            return 1;
        }
    return 0;
}

typedef struct {
    size_t idx;
    uint64_t begin, end;
} range;

static int cmp_range(const void *a, const void *b)
{
    const range *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : 0;
}

static brt_status parse_header(brt_st_file *f, const char *json, size_t json_len,
                               uint64_t data_len, const unsigned char *data, brt_err *err)
{
    json_error_t je;
    json_t *root = json_loadb(json, json_len, 0, &je);
    if (!root)
        return brt_errf(err, BRT_ERR_FORMAT, "%s: safetensors header is not valid JSON (%s at byte %d)",
                        f->path, je.text, je.position);
    if (!json_is_object(root)) {
        json_decref(root);
        return brt_errf(err, BRT_ERR_FORMAT, "%s: safetensors header is not a JSON object", f->path);
    }
    size_t n = json_object_size(root);
    if (json_object_get(root, "__metadata__"))
        n--;
    f->tensors = calloc(n ? n : 1, sizeof *f->tensors);
    size_t names_len = 0;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) names_len += strlen(key) + 1;
    f->names = malloc(names_len + 1);
    range *ranges = calloc(n ? n : 1, sizeof *ranges);
    if (!f->tensors || !f->names || !ranges) {
        free(ranges);
        json_decref(root);
        return brt_errf(err, BRT_ERR_NOMEM, "%s: out of memory reading the header", f->path);
    }
    brt_status st = BRT_OK;
    char *np = f->names;
    size_t i = 0;
    json_object_foreach(root, key, val)
    {
        if (!strcmp(key, "__metadata__")) {
            if (!json_is_object(val)) {
                st = brt_errf(err, BRT_ERR_FORMAT, "%s: __metadata__ is not an object", f->path);
                break;
            }
            continue;
        }
        brt_st_tensor *t = &f->tensors[i];
        size_t kl = strlen(key);
        memcpy(np, key, kl + 1);
        t->name = np;
        np += kl + 1;
        t->path = f->path;
        json_t *jd = json_object_get(val, "dtype"), *js = json_object_get(val, "shape"),
               *jo = json_object_get(val, "data_offsets");
        if (!json_is_object(val) || !json_is_string(jd) || !json_is_array(js) || !json_is_array(jo) ||
            json_array_size(jo) != 2) {
            st = brt_errf(err, BRT_ERR_FORMAT,
                          "%s: tensor '%s': header entry needs dtype, shape and data_offsets [begin, end]",
                          f->path, key);
            break;
        }
        if (!parse_dtype(json_string_value(jd), &t->dtype)) {
            st = brt_errf(err, BRT_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%s'", f->path, key,
                          json_string_value(jd));
            break;
        }
        if (json_array_size(js) > BRT_ST_MAX_DIMS) {
            st = brt_errf(err, BRT_ERR_FORMAT, "%s: tensor '%s': %zu dimensions (at most %d)", f->path,
                          key, json_array_size(js), BRT_ST_MAX_DIMS);
            break;
        }
        t->ndim = (int)json_array_size(js);
        int64_t numel = 1;
        int bad = 0;
        for (int d = 0; d < t->ndim; d++) {
            json_t *e = json_array_get(js, (size_t)d);
            if (!json_is_integer(e) || json_integer_value(e) < 0 ||
                json_integer_value(e) > ((int64_t)1 << 40)) {
                bad = 1;
                break;
            }
            t->shape[d] = json_integer_value(e);
            if (t->shape[d] && numel > INT64_MAX / 16 / t->shape[d]) {
                bad = 1;
                break;
            }
            numel *= t->shape[d];
        }
        json_t *jb = json_array_get(jo, 0), *je2 = json_array_get(jo, 1);
        if (bad || !json_is_integer(jb) || !json_is_integer(je2) || json_integer_value(jb) < 0 ||
            json_integer_value(je2) < json_integer_value(jb)) {
            st = brt_errf(err, BRT_ERR_FORMAT, "%s: tensor '%s': invalid shape or data_offsets", f->path,
                          key);
            break;
        }
        t->numel = numel;
        uint64_t b = (uint64_t)json_integer_value(jb), e = (uint64_t)json_integer_value(je2);
        uint64_t want = (uint64_t)numel * brt_dtype_size(t->dtype);
        if (e - b != want) {
            st = brt_errf(err, BRT_ERR_FORMAT,
                          "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but dtype %s and "
                          "shape need %llu",
                          f->path, key, (unsigned long long)b, (unsigned long long)e,
                          (unsigned long long)(e - b), brt_dtype_name(t->dtype), (unsigned long long)want);
            break;
        }
        if (e > data_len) {
            st = brt_errf(err, BRT_ERR_FORMAT,
                          "%s: tensor '%s': data_offsets end %llu is past the end of the file's data "
                          "(%llu bytes; truncated file?)",
                          f->path, key, (unsigned long long)e, (unsigned long long)data_len);
            break;
        }
        t->data = data + b;
        t->nbytes = (size_t)(e - b);
        ranges[i] = (range){i, b, e};
        i++;
    }
    if (st == BRT_OK) {
        f->n = i;
        qsort(ranges, i, sizeof *ranges, cmp_range);
        for (size_t k = 1; k < i; k++)
            if (ranges[k].begin < ranges[k - 1].end) {
                st = brt_errf(err, BRT_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap in the file",
                              f->path, f->tensors[ranges[k - 1].idx].name, f->tensors[ranges[k].idx].name);
                break;
            }
    }
    free(ranges);
    json_decref(root);
    return st;
}

brt_status brt_st_open(const char *path, brt_st_file **out, brt_err *err)
{
    *out = NULL;
    brt_st_file *f = calloc(1, sizeof *f);
    if (!f)
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    f->path = strdup(path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        brt_status st = brt_errf(err, errno == ENOENT ? BRT_ERR_NOT_FOUND : BRT_ERR_IO, "%s: %s", path,
                                 strerror(errno));
        brt_st_close(f);
        return st;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        brt_st_close(f);
        return brt_errf(err, BRT_ERR_IO, "%s: not a regular file", path);
    }
    f->size = (size_t)sb.st_size;
    if (f->size < 8) {
        close(fd);
        brt_st_close(f);
        return brt_errf(err, BRT_ERR_FORMAT, "%s: file is %zu bytes, too short for a safetensors header",
                        path, (size_t)sb.st_size);
    }
    f->map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        brt_status st = brt_errf(err, BRT_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
        brt_st_close(f);
        return st;
    }
    const unsigned char *p = f->map;
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = (hl << 8) | p[i];
    if (hl > ST_MAX_HEADER || hl > f->size - 8) {
        brt_status st = brt_errf(err, BRT_ERR_FORMAT,
                                 "%s: header length %llu does not fit in the file (%zu bytes; truncated or "
                                 "not a safetensors file)",
                                 path, (unsigned long long)hl, f->size);
        brt_st_close(f);
        return st;
    }
    brt_status st = parse_header(f, (const char *)p + 8, (size_t)hl, f->size - 8 - hl, p + 8 + hl, err);
    if (st != BRT_OK) {
        brt_st_close(f);
        return st;
    }
    *out = f;
    return BRT_OK;
}

void brt_st_close(brt_st_file *f)
{
    if (!f)
        return;
    if (f->map)
        munmap(f->map, f->size);
    free(f->tensors);
    free(f->names);
    free(f->path);
    free(f);
}

static brt_status set_add_file(brt_st_set *set, brt_st_file *f, brt_err *err)
{
    brt_st_file **nf = realloc(set->files, (set->n_files + 1) * sizeof *nf);
    if (!nf) {
        brt_st_close(f);
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    }
    set->files = nf;
    set->files[set->n_files++] = f;
    for (size_t i = 0; i < f->n; i++) {
        intptr_t prev;
        if (brt_strmap_get(&set->by_name, f->tensors[i].name, &prev))
            return brt_errf(err, BRT_ERR_FORMAT, "tensor '%s' is in both %s and %s", f->tensors[i].name,
                            ((const brt_st_tensor *)prev)->path, f->path);
        if (brt_strmap_put(&set->by_name, f->tensors[i].name, (intptr_t)&f->tensors[i]) != 0)
            return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    }
    return BRT_OK;
}

brt_status brt_st_set_open_file(const char *path, brt_st_set *set, brt_err *err)
{
    memset(set, 0, sizeof *set);
    brt_strmap_init(&set->by_name);
    brt_st_file *f;
    brt_status st = brt_st_open(path, &f, err);
    if (st == BRT_OK)
        st = set_add_file(set, f, err);
    if (st != BRT_OK)
        brt_st_set_close(set);
    return st;
}

brt_status brt_st_set_open_dir(const char *dir, brt_st_set *set, brt_err *err)
{
    memset(set, 0, sizeof *set);
    brt_strmap_init(&set->by_name);
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    if (access(path, F_OK) != 0) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        if (access(path, F_OK) != 0)
            return brt_errf(err, BRT_ERR_NOT_FOUND,
                            "%s: no model.safetensors or model.safetensors.index.json (PyTorch .bin "
                            "checkpoints must be converted first, see docs/models.md)",
                            dir);
        return brt_st_set_open_file(path, set, err);
    }
    json_error_t je;
    json_t *idx = json_load_file(path, 0, &je);
    if (!idx)
        return brt_errf(err, BRT_ERR_FORMAT, "%s: line %d: %s", path, je.line, je.text);
    json_t *wm = json_object_get(idx, "weight_map");
    brt_status st = BRT_OK;
    if (!json_is_object(wm)) {
        st = brt_errf(err, BRT_ERR_FORMAT, "%s: no \"weight_map\" object", path);
        goto done;
    }
    /* open each shard once, in index order */
    const char *name;
    json_t *shard;
    json_object_foreach(wm, name, shard)
    {
        if (!json_is_string(shard) || strchr(json_string_value(shard), '/')) {
            st = brt_errf(err, BRT_ERR_FORMAT, "%s: weight_map[\"%s\"] is not a file name in the folder",
                          path, name);
            goto done;
        }
        char sp[4096];
        snprintf(sp, sizeof sp, "%s/%s", dir, json_string_value(shard));
        int have = 0;
        for (size_t i = 0; i < set->n_files; i++)
            if (!strcmp(set->files[i]->path, sp))
                have = 1;
        if (!have) {
            brt_st_file *f;
            st = brt_st_open(sp, &f, err);
            if (st == BRT_OK)
                st = set_add_file(set, f, err);
            if (st != BRT_OK)
                goto done;
        }
    }
    json_object_foreach(wm, name, shard)
    {
        const brt_st_tensor *t = brt_st_set_find(set, name);
        char sp[4096];
        snprintf(sp, sizeof sp, "%s/%s", dir, json_string_value(shard));
        if (!t) {
            st = brt_errf(err, BRT_ERR_NOT_FOUND, "%s: tensor '%s' is listed for %s but not in it", path,
                          name, sp);
            goto done;
        }
        if (strcmp(t->path, sp) != 0) {
            st = brt_errf(err, BRT_ERR_FORMAT, "%s: tensor '%s' is listed for %s but found in %s", path,
                          name, sp, t->path);
            goto done;
        }
    }
done:
    json_decref(idx);
    if (st != BRT_OK)
        brt_st_set_close(set);
    return st;
}

void brt_st_set_close(brt_st_set *set)
{
    for (size_t i = 0; i < set->n_files; i++)
        brt_st_close(set->files[i]);
    free(set->files);
    brt_strmap_free(&set->by_name);
    memset(set, 0, sizeof *set);
}

const brt_st_tensor *brt_st_set_find(const brt_st_set *set, const char *name)
{
    intptr_t v;
    return brt_strmap_get(&set->by_name, name, &v) ? (const brt_st_tensor *)v : NULL;
}

static int cmp_out(const void *a, const void *b)
{
    return strcmp(((const brt_st_out_tensor *const *)a)[0]->name,
                  ((const brt_st_out_tensor *const *)b)[0]->name);
}

brt_status brt_st_write(const char *path, const brt_st_out_tensor *t, size_t n, brt_err *err)
{
    const brt_st_out_tensor **order = malloc((n ? n : 1) * sizeof *order);
    json_t *hdr = json_object();
    if (!order || !hdr) {
        free(order);
        json_decref(hdr);
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++)
        order[i] = &t[i];
    qsort(order, n, sizeof *order, cmp_out);
    json_t *meta = json_object();
    json_object_set_new(meta, "format", json_string("pt"));
    json_object_set_new(hdr, "__metadata__", meta);
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const brt_st_out_tensor *x = order[i];
        json_t *e = json_object(), *shape = json_array();
        uint64_t numel = 1;
        for (int d = 0; d < x->ndim; d++) {
            json_array_append_new(shape, json_integer(x->shape[d]));
            numel *= (uint64_t)x->shape[d];
        }
        uint64_t bytes = numel * brt_dtype_size(x->dtype);
        json_object_set_new(e, "dtype", json_string(brt_dtype_name(x->dtype)));
        json_object_set_new(e, "shape", shape);
        json_t *offs = json_array();
        json_array_append_new(offs, json_integer((json_int_t)off));
        json_array_append_new(offs, json_integer((json_int_t)(off + bytes)));
        json_object_set_new(e, "data_offsets", offs);
        json_object_set_new(hdr, x->name, e);
        off += bytes;
    }
    char *js = json_dumps(hdr, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(hdr);
    brt_status st = BRT_OK;
    FILE *fp = NULL;
    if (!js) {
        st = brt_errf(err, BRT_ERR_NOMEM, "out of memory");
        goto out;
    }
    size_t hl = strlen(js), padded = (hl + 7) & ~(size_t)7;
    fp = fopen(path, "wb");
    if (!fp) {
        st = brt_errf(err, BRT_ERR_IO, "%s: %s", path, strerror(errno));
        goto out;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    int ok = fwrite(len8, 1, 8, fp) == 8 && fwrite(js, 1, hl, fp) == hl;
    for (size_t i = hl; ok && i < padded; i++)
        ok = fputc(' ', fp) != EOF;
    for (size_t i = 0; ok && i < n; i++) {
        uint64_t numel = 1;
        for (int d = 0; d < order[i]->ndim; d++)
            numel *= (uint64_t)order[i]->shape[d];
        size_t bytes = (size_t)numel * brt_dtype_size(order[i]->dtype);
        ok = fwrite(order[i]->data, 1, bytes, fp) == bytes;
    }
    if (fclose(fp) != 0)
        ok = 0;
    fp = NULL;
    if (!ok)
        st = brt_errf(err, BRT_ERR_IO, "%s: write failed: %s", path, strerror(errno));
out:
    free(js);
    free(order);
    return st;
}

brt_status brt_st_read_ids(const brt_st_tensor *t, int32_t **ids, size_t *n, brt_err *err)
{
    *ids = NULL;
    *n = 0;
    if (t->dtype != BRT_DT_I64 && t->dtype != BRT_DT_I32)
        return brt_errf(err, BRT_ERR_FORMAT, "%s: tensor '%s' is %s; token ids must be I64 or I32", t->path,
                        t->name, brt_dtype_name(t->dtype));
    if (!(t->ndim == 1 || (t->ndim == 2 && t->shape[0] == 1)) || t->numel == 0)
        return brt_errf(err, BRT_ERR_FORMAT, "%s: tensor '%s' must be shaped [1, L] or [L] with L > 0",
                        t->path, t->name);
    int32_t *out = malloc((size_t)t->numel * sizeof *out);
    if (!out)
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < t->numel; i++) {
        int64_t v;
        if (t->dtype == BRT_DT_I64)
            memcpy(&v, (const char *)t->data + 8 * i, 8);
        else {
            int32_t w;
            memcpy(&w, (const char *)t->data + 4 * i, 4);
            v = w;
        }
        if (v < 0 || v > INT32_MAX) {
            free(out);
            return brt_errf(err, BRT_ERR_RANGE, "%s: tensor '%s': id %lld at position %lld is out of range",
                            t->path, t->name, (long long)v, (long long)i);
        }
        out[i] = (int32_t)v;
    }
    *ids = out;
    *n = (size_t)t->numel;
    return BRT_OK;
}

void brt_st_set_release(const brt_st_set *set, const void *p, size_t bytes)
{
    const long pg = sysconf(_SC_PAGE_SIZE);
    if (!set || !p || pg <= 0)
        return;
    const uintptr_t b = (uintptr_t)p, e = b + bytes;
    for (size_t i = 0; i < set->n_files; i++) {
        const uintptr_t mb = (uintptr_t)set->files[i]->map, me = mb + set->files[i]->size;
        if (b < mb || e > me)
            continue;
        const uintptr_t lo = (b + (uintptr_t)pg - 1) / (uintptr_t)pg * (uintptr_t)pg, hi = e / (uintptr_t)pg * (uintptr_t)pg;
        if (hi > lo)
            madvise((void *)lo, hi - lo, MADV_DONTNEED); /* a hint: its failure changes nothing */
        return;
    }
}
