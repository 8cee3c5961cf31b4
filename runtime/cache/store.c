#include "cache/store.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/u64map.h"

#define FILE_MAGIC "BRTSTATE"
#define FILE_VERSION 1u

/* The header of a state file, as written (little-endian hosts only, like the rest of the runtime's
 * binary formats). */
typedef struct file_header {
    char magic[8];
    uint32_t version, header_bytes;
    uint8_t settings[BRT_KEY_BYTES];
    uint8_t key[BRT_KEY_BYTES];
    int32_t layer_begin, layer_end;
    uint64_t image_bytes;
    uint8_t checksum[16];       /* BLAKE2b-128 of the image */
} file_header;

typedef struct host_entry {
    brt_cache_key key;
    void *image;
    size_t len;
} host_entry;

struct brt_state_store {
    brt_state_store_opts o;
    char *dir;
    brt_u64map host;            /* brt_key_u64 -> host_entry */
    int64_t host_bytes;
    brt_u64map dev;             /* brt_key_u64 -> host_entry whose image is a device-tier handle */
};

static brt_status mkdirs(const char *path, brt_err *err)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
        return brt_errf(err, BRT_ERR_INVALID, "state cache folder path too long: %s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
                return brt_errf(err, BRT_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
            *p = '/';
        }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        return brt_errf(err, BRT_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    return BRT_OK;
}

brt_status brt_state_store_open(const brt_state_store_opts *o, brt_state_store **out, brt_err *err)
{
    *out = NULL;
    brt_state_store *s = calloc(1, sizeof *s);
    if (!s)
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory");
    s->o = *o;
    brt_u64map_init(&s->host);
    brt_u64map_init(&s->dev);
    if (o->dir && *o->dir) {
        brt_status st = mkdirs(o->dir, err);
        if (st == BRT_OK && !(s->dir = strdup(o->dir)))
            st = brt_errf(err, BRT_ERR_NOMEM, "out of memory");
        if (st != BRT_OK) {
            brt_state_store_close(s);
            return st;
        }
    }
    s->o.dir = s->dir;
    *out = s;
    return BRT_OK;
}

void brt_state_store_close(brt_state_store *s)
{
    if (!s)
        return;
    size_t it = 0;
    void *v;
    while (brt_u64map_next(&s->host, &it, NULL, &v)) {
        host_entry *e = v;
        free(e->image);
        free(e);
    }
    brt_u64map_free(&s->host);
    it = 0;
    while (brt_u64map_next(&s->dev, &it, NULL, &v)) {
        host_entry *e = v;
        s->o.dev_free(s->o.dev_ctx, e->image);
        free(e);
    }
    brt_u64map_free(&s->dev);
    free(s->dir);
    free(s);
}

int brt_state_store_has_disk(const brt_state_store *s) { return s && s->dir; }
int64_t brt_state_store_host_bytes(const brt_state_store *s) { return s ? s->host_bytes : 0; }

brt_status brt_state_store_put_host(brt_state_store *s, const brt_cache_key *k, void *image, size_t len, brt_err *err)
{
    brt_state_store_drop_host(s, k);
    host_entry *e = malloc(sizeof *e);
    if (!e || brt_u64map_put(&s->host, brt_key_u64(k), e) != 0) {
        free(e);
        free(image);
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory for a state image");
    }
    *e = (host_entry){*k, image, len};
    s->host_bytes += (int64_t)len;
    return BRT_OK;
}

const void *brt_state_store_get_host(const brt_state_store *s, const brt_cache_key *k, size_t *len)
{
    const host_entry *e = brt_u64map_get(&s->host, brt_key_u64(k));
    if (!e || !brt_key_equal(&e->key, k))
        return NULL;
    *len = e->len;
    return e->image;
}

void brt_state_store_drop_host(brt_state_store *s, const brt_cache_key *k)
{
    host_entry *e = brt_u64map_get(&s->host, brt_key_u64(k));
    if (!e || !brt_key_equal(&e->key, k))
        return;
    brt_u64map_del(&s->host, brt_key_u64(k));
    s->host_bytes -= (int64_t)e->len;
    free(e->image);
    free(e);
}

brt_status brt_state_store_put_dev(brt_state_store *s, const brt_cache_key *k, void *handle, brt_err *err)
{
    brt_state_store_drop_dev(s, k);
    host_entry *e = malloc(sizeof *e);
    if (!e || brt_u64map_put(&s->dev, brt_key_u64(k), e) != 0) {
        free(e);
        s->o.dev_free(s->o.dev_ctx, handle);
        return brt_errf(err, BRT_ERR_NOMEM, "out of memory for a kept state");
    }
    *e = (host_entry){*k, handle, 0};
    return BRT_OK;
}

void *brt_state_store_get_dev(const brt_state_store *s, const brt_cache_key *k)
{
    const host_entry *e = brt_u64map_get(&s->dev, brt_key_u64(k));
    return e && brt_key_equal(&e->key, k) ? e->image : NULL;
}

void brt_state_store_drop_dev(brt_state_store *s, const brt_cache_key *k)
{
    host_entry *e = brt_u64map_get(&s->dev, brt_key_u64(k));
    if (!e || !brt_key_equal(&e->key, k))
        return;
    brt_u64map_del(&s->dev, brt_key_u64(k));
    s->o.dev_free(s->o.dev_ctx, e->image);
    free(e);
}

static void file_path(const brt_state_store *s, const brt_cache_key *k, char *out, size_t cap)
{
    char hex[2 * BRT_KEY_BYTES + 1];
    brt_key_hex(k, hex);
    snprintf(out, cap, "%s/%s.L%d-%d.state", s->dir, hex, s->o.layer_begin, s->o.layer_end - 1);
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

brt_status brt_state_store_write_disk(brt_state_store *s, const brt_cache_key *k, const void *image, size_t len,
                                      brt_err *err)
{
    if (!s->dir)
        return brt_errf(err, BRT_ERR_INVALID, "no state cache folder (--state-cache-dir)");
    file_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, FILE_MAGIC, 8);
    h.version = FILE_VERSION;
    h.header_bytes = sizeof h;
    memcpy(h.settings, s->o.settings.b, BRT_KEY_BYTES);
    memcpy(h.key, k->b, BRT_KEY_BYTES);
    h.layer_begin = s->o.layer_begin;
    h.layer_end = s->o.layer_end;
    h.image_bytes = len;
    crypto_generichash(h.checksum, sizeof h.checksum, image, len, NULL, 0);
    char path[4200], tmp[4300];
    file_path(s, k, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return brt_errf(err, BRT_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    int bad = write_all(fd, &h, sizeof h) || write_all(fd, image, len) || fsync(fd) != 0;
    const int e = errno;
    if (close(fd) != 0)
        bad = 1;
    if (bad || rename(tmp, path) != 0) {
        unlink(tmp);
        return brt_errf(err, BRT_ERR_IO, "%s: cannot write: %s", path, strerror(bad ? e : errno));
    }
    int dfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC); /* the rename itself, durably */
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return BRT_OK;
}

brt_status brt_state_store_read_disk(brt_state_store *s, const brt_cache_key *k, void **image, size_t *len,
                                     brt_err *err)
{
    *image = NULL;
    *len = 0;
    if (!s->dir)
        return brt_errf(err, BRT_ERR_NOT_FOUND, "no state cache folder");
    char path[4200];
    file_path(s, k, path, sizeof path);
    FILE *f = fopen(path, "rb");
    if (!f)
        return brt_errf(err, errno == ENOENT ? BRT_ERR_NOT_FOUND : BRT_ERR_IO, "%s: %s", path, strerror(errno));
    file_header h;
    brt_status st = BRT_OK;
    struct stat sb;
    void *buf = NULL;
    if (fread(&h, sizeof h, 1, f) != 1)
        st = brt_errf(err, BRT_ERR_FORMAT, "%s: shorter than a state file's header", path);
    else if (memcmp(h.magic, FILE_MAGIC, 8) != 0)
        st = brt_errf(err, BRT_ERR_FORMAT, "%s: not a beaconrt state file", path);
    else if (h.version != FILE_VERSION || h.header_bytes != sizeof h)
        st = brt_errf(err, BRT_ERR_FORMAT, "%s: state file version %u, this beaconrt reads %u", path, h.version,
                      FILE_VERSION);
    else if (memcmp(h.settings, s->o.settings.b, BRT_KEY_BYTES) != 0)
        st = brt_errf(err, BRT_ERR_FORMAT, "%s: made with another model or settings", path);
    else if (memcmp(h.key, k->b, BRT_KEY_BYTES) != 0 || h.layer_begin != s->o.layer_begin ||
             h.layer_end != s->o.layer_end)
        st = brt_errf(err, BRT_ERR_FORMAT, "%s: holds another state (key or layers differ)", path);
    else if (fstat(fileno(f), &sb) != 0 || (uint64_t)sb.st_size != sizeof h + h.image_bytes)
        st = brt_errf(err, BRT_ERR_FORMAT, "%s: %lld bytes, its header says %llu", path, (long long)sb.st_size,
                      (unsigned long long)(sizeof h + h.image_bytes));
    else if (!(buf = malloc(h.image_bytes ? h.image_bytes : 1)))
        st = brt_errf(err, BRT_ERR_NOMEM, "%s: out of memory for %llu bytes", path, (unsigned long long)h.image_bytes);
    else if (h.image_bytes && fread(buf, h.image_bytes, 1, f) != 1)
        st = brt_errf(err, BRT_ERR_FORMAT, "%s: truncated", path);
    else {
        uint8_t sum[16];
        crypto_generichash(sum, sizeof sum, buf, h.image_bytes, NULL, 0);
        if (memcmp(sum, h.checksum, sizeof sum) != 0)
            st = brt_errf(err, BRT_ERR_FORMAT, "%s: checksum mismatch (the file is damaged)", path);
    }
    fclose(f);
    if (st != BRT_OK) {
        free(buf);
        return st;
    }
    *image = buf;
    *len = h.image_bytes;
    return BRT_OK;
}

void brt_state_store_drop_disk(brt_state_store *s, const brt_cache_key *k)
{
    if (!s->dir)
        return;
    char path[4200];
    file_path(s, k, path, sizeof path);
    unlink(path);
}
