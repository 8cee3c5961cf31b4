/* What the harnesses share: a scratch folder for the parsers whose public entry point takes a
 * path (safetensors, tokenizer.model, the batch file, the journal), and a failed-property stop.
 *
 * The folder is one per process (libFuzzer's -jobs/-workers start several), under $TMPDIR, else
 * /dev/shm (the journal fsyncs, which costs nothing on tmpfs), else /tmp; it is removed at exit,
 * though not after a finding (abort skips atexit): libFuzzer has saved the input by then. */
#ifndef BRT_FUZZ_UTIL_H
#define BRT_FUZZ_UTIL_H

#include <dirent.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char fuzz_dir_[PATH_MAX];

static inline void fuzz_dir_remove_(void)
{
    /* flat: the harnesses only write files straight into it */
    DIR *d = opendir(fuzz_dir_);
    if (!d)
        return;
    char path[PATH_MAX + 256];
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(path, sizeof path, "%s/%s", fuzz_dir_, e->d_name);
            unlink(path);
        }
    }
    closedir(d);
    rmdir(fuzz_dir_);
}

/* The process's scratch folder, created on first use; NULL (and a message) if none can be made. */
static inline const char *fuzz_dir(void)
{
    if (fuzz_dir_[0])
        return fuzz_dir_;
    struct stat sb;
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) && access("/dev/shm", W_OK) == 0
                   ? "/dev/shm"
                   : "/tmp";
    snprintf(fuzz_dir_, sizeof fuzz_dir_, "%s/brt-fuzz-XXXXXX", base);
    if (!mkdtemp(fuzz_dir_)) {
        fprintf(stderr, "fuzz: cannot create a scratch folder under %s\n", base);
        fuzz_dir_[0] = '\0';
        return NULL;
    }
    atexit(fuzz_dir_remove_);
    return fuzz_dir_;
}

/* Write data to <scratch>/name (replacing it) and return the path in a static buffer; NULL if the
 * file cannot be written (the harness then skips the input: a full disk is not a finding). */
static inline const char *fuzz_write_file(const char *name, const uint8_t *data, size_t size)
{
    static char path[PATH_MAX];
    const char *dir = fuzz_dir();
    if (!dir)
        return NULL;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        return NULL;
    size_t put = size ? fwrite(data, 1, size, f) : 0;
    if (fclose(f) != 0 || put != size)
        return NULL;
    return path;
}

/* A documented property of a parser's output did not hold: that is a finding, so stop the way a
 * sanitizer would (libFuzzer saves the input). */
#define FUZZ_CHECK(cond)                                                                      \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "fuzz: property failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                          \
        }                                                                                     \
    } while (0)

#endif
