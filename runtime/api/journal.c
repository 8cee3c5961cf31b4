/* The results journal: the batch output file itself, appended one fsync'ed line per finished job,
 * scanned on a rerun to skip what is done. */
#include "api/journal.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/text.h"
#include "base/strmap.h"

struct brt_journal {
    int fd;
    char *path;
    brt_strmap done;  /* custom_id -> 1-based line in the file */
    size_t n_lines;   /* lines in the file, blank ones included */
    off_t size;       /* bytes of good lines: where the next append lands */
    size_t truncated; /* bytes cut off by open */
    int broken;       /* an append failed half-way: the file's state is unknown */
};

/* Makes a just-created file's name durable; best effort, some filesystems refuse it. */
static void fsync_parent_dir(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return;
    int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    free(copy);
}

enum line_kind { LINE_GOOD, LINE_BLANK, LINE_TORN, LINE_FOREIGN };

/* GOOD: a complete result line. TORN: what a crash mid-append can leave (no '\n', not JSON,
 * no custom_id). FOREIGN: a complete JSON object with a custom_id that is not a result line -
 * most likely the input file given as output; never cut, since no torn write looks like that. */
static enum line_kind classify(const char *s, size_t n, char **id, char *why, size_t why_cap)
{
    *id = NULL;
    int has_nl = n && s[n - 1] == '\n';
    if (has_nl && brt_is_blank(s, n))
        return LINE_BLANK;
    json_error_t je;
    /* a completion's text may hold a NUL byte (a <0x00> token), written as \u0000 */
    json_t *root = json_loadb(s, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    enum line_kind k = LINE_TORN;
    if (!root)
        snprintf(why, why_cap, "invalid JSON at column %d: %s", je.column, je.text);
    else if (!json_is_object(root))
        snprintf(why, why_cap, "not a JSON object");
    else {
        const json_t *cid = json_object_get(root, "custom_id");
        if (!json_is_string(cid) || json_string_length(cid) == 0)
            snprintf(why, why_cap, "no custom_id");
        else if (!json_object_get(root, "response") || !json_object_get(root, "error")) {
            snprintf(why, why_cap, "custom_id \"%.200s\" without response/error: not a result line",
                     json_string_value(cid));
            k = LINE_FOREIGN;
        } else if (!has_nl)
            snprintf(why, why_cap, "no trailing newline");
        else {
            *id = strdup(json_string_value(cid));
            k = *id ? LINE_GOOD : LINE_TORN;
            if (!*id)
                snprintf(why, why_cap, "out of memory");
        }
    }
    json_decref(root);
    return k;
}

static brt_status journal_scan(brt_journal *j, brt_err *err)
{
    int dfd = dup(j->fd);
    FILE *f = dfd >= 0 ? fdopen(dfd, "rb") : NULL;
    if (!f) {
        if (dfd >= 0)
            close(dfd);
        return brt_errf(err, BRT_ERR_IO, "journal %s: cannot read: %s", j->path, strerror(errno));
    }
    rewind(f);
    char *buf = NULL;
    size_t cap = 0, line_no = 0;
    off_t pos = 0, good_end = 0;
    size_t torn_line = 0; /* a torn line seen; fine only if nothing follows it */
    char why[512] = "", torn_why[512] = "";
    ssize_t got;
    brt_status st = BRT_OK;
    while ((got = getline(&buf, &cap, f)) >= 0) {
        line_no++;
        if (torn_line) {
            st = brt_errf(err, BRT_ERR_FORMAT,
                          "journal %s: line %zu is not a complete result line (%s) but more lines "
                          "follow it; refusing to guess - repair or remove that line",
                          j->path, torn_line, torn_why);
            break;
        }
        char *id;
        enum line_kind k = classify(buf, (size_t)got, &id, why, sizeof why);
        pos += got;
        if (k == LINE_FOREIGN) {
            st = brt_errf(err, BRT_ERR_FORMAT, "journal %s: line %zu: %s (input and output swapped?)",
                          j->path, line_no, why);
            break;
        }
        if (k == LINE_TORN) {
            torn_line = line_no;
            memcpy(torn_why, why, sizeof why);
            continue;
        }
        good_end = pos;
        if (k == LINE_BLANK)
            continue;
        intptr_t first;
        if (brt_strmap_get(&j->done, id, &first)) {
            st = brt_errf(err, BRT_ERR_FORMAT,
                          "journal %s: line %zu: custom_id \"%.200s\" is already on line %zu; a "
                          "results file holds each job once",
                          j->path, line_no, id, (size_t)first);
            free(id);
            break;
        }
        int rc = brt_strmap_put(&j->done, id, (intptr_t)line_no);
        free(id);
        if (rc != 0) {
            st = brt_errf(err, BRT_ERR_NOMEM, "journal %s: out of memory at line %zu", j->path,
                          line_no);
            break;
        }
    }
    if (st == BRT_OK && ferror(f))
        st = brt_errf(err, BRT_ERR_IO, "journal %s: read failed after line %zu: %s", j->path,
                      line_no, strerror(errno));
    else if (st == BRT_OK && !feof(f))
        st = brt_errf(err, BRT_ERR_NOMEM, "journal %s: out of memory reading line %zu", j->path,
                      line_no + 1);
    free(buf);
    fclose(f);
    if (st != BRT_OK)
        return st;
    j->n_lines = line_no - (torn_line ? 1 : 0);
    j->size = good_end;
    if (pos > good_end) {
        if (ftruncate(j->fd, good_end) != 0 || fsync(j->fd) != 0)
            return brt_errf(err, BRT_ERR_IO, "journal %s: cannot cut the torn last line %zu: %s",
                            j->path, torn_line, strerror(errno));
        j->truncated = (size_t)(pos - good_end);
    }
    return BRT_OK;
}

brt_status brt_journal_open(const char *path, brt_journal **out, brt_err *err)
{
    *out = NULL;
    brt_journal *j = calloc(1, sizeof *j);
    if (!j || !(j->path = strdup(path))) {
        free(j);
        return brt_errf(err, BRT_ERR_NOMEM, "journal %s: out of memory", path);
    }
    j->fd = -1;
    brt_strmap_init(&j->done);
    brt_status st = BRT_OK;
    int created = 1;
    j->fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (j->fd < 0 && errno == EEXIST) {
        created = 0;
        j->fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC);
    }
    struct stat sb;
    if (j->fd < 0) {
        st = brt_errf(err, BRT_ERR_IO, "journal %s: cannot open for appending: %s", path,
                      strerror(errno));
    } else if (fstat(j->fd, &sb) != 0) {
        st = brt_errf(err, BRT_ERR_IO, "journal %s: fstat: %s", path, strerror(errno));
    } else if (!S_ISREG(sb.st_mode)) {
        st = brt_errf(err, BRT_ERR_INVALID,
                      "journal %s: not a regular file (the output doubles as the resume journal, "
                      "so it must be a file)",
                      path);
    } else if (flock(j->fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK) {
        /* other flock errors mean the filesystem lacks flock: go on unlocked */
        st = brt_errf(err, BRT_ERR_IO,
                      "journal %s: another process holds a lock on it (is another beaconrt run "
                      "writing this output?)",
                      path);
    }
    if (st == BRT_OK) {
        if (created)
            fsync_parent_dir(path);
        st = journal_scan(j, err);
    }
    if (st != BRT_OK) {
        brt_journal_close(j);
        return st;
    }
    *out = j;
    return BRT_OK;
}

int brt_journal_is_done(const brt_journal *j, const char *custom_id)
{
    return j && custom_id && brt_strmap_get(&j->done, custom_id, NULL);
}

size_t brt_journal_n_done(const brt_journal *j) { return j ? j->done.n : 0; }

size_t brt_journal_truncated_bytes(const brt_journal *j) { return j ? j->truncated : 0; }

brt_status brt_journal_append(brt_journal *j, const char *custom_id, const char *line, brt_err *err)
{
    if (!j || !custom_id || !*custom_id || !line)
        return brt_errf(err, BRT_ERR_INVALID, "journal append: missing journal, custom_id or line");
    if (j->broken)
        return brt_errf(err, BRT_ERR_IO,
                        "journal %s: an earlier append failed part-way; not writing %s (rerun to "
                        "resume from what is on disk)",
                        j->path, custom_id);
    size_t len = strlen(line);
    if (len == 0 || line[len - 1] != '\n' || memchr(line, '\n', len - 1))
        return brt_errf(err, BRT_ERR_INVALID,
                        "journal %s: the line for %s must be exactly one line ending in a newline",
                        j->path, custom_id);
    intptr_t where;
    if (brt_strmap_get(&j->done, custom_id, &where))
        return brt_errf(err, BRT_ERR_INTERNAL,
                        "journal %s: custom_id %s is already on line %zu; refusing to write it twice",
                        j->path, custom_id, (size_t)where);

    /* one write() so a crash leaves at most this line torn; the loop only finishes a short
     * write (a signal, a full disk), and a failure cuts the partial line so none is left in
     * the middle of the file for later appends to bury */
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(j->fd, line + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = w < 0 ? errno : EIO;
            if (ftruncate(j->fd, j->size) != 0)
                j->broken = 1;
            return brt_errf(err, BRT_ERR_IO, "journal %s: writing the result of %s: %s", j->path,
                            custom_id, strerror(e));
        }
        off += (size_t)w;
    }
    if (fsync(j->fd) != 0) {
        /* after a failed fsync the page cache may not match the disk: stop appending */
        j->broken = 1;
        return brt_errf(err, BRT_ERR_IO, "journal %s: fsync after the result of %s: %s", j->path,
                        custom_id, strerror(errno));
    }
    j->size += (off_t)len;
    j->n_lines++;
    if (brt_strmap_put(&j->done, custom_id, (intptr_t)j->n_lines) != 0) {
        /* written but not remembered: further appends could duplicate it */
        j->broken = 1;
        return brt_errf(err, BRT_ERR_NOMEM, "journal %s: out of memory after writing %s", j->path,
                        custom_id);
    }
    return BRT_OK;
}

void brt_journal_close(brt_journal *j)
{
    if (!j)
        return;
    if (j->fd >= 0)
        close(j->fd);
    brt_strmap_free(&j->done);
    free(j->path);
    free(j);
}
