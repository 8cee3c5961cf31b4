/* Tokenizer throughput on a long generated document: encode (one call over the whole text, as a
 * 400K-token prompt is encoded) and decode, single-threaded, for each tokenizer given.
 *   bench_tokenizer [--tokens N] [--reps N] [--text FILE] [TOKENIZER ...]
 * A TOKENIZER is a model folder (tokenizer.json, else tokenizer.model, as the runtime picks) or a
 * tokenizer file. Default: the sentencepiece tokenizers in the repository and the converted
 * tokenizer.json folders tests/tokenizer/hf_reference.sh leaves in build/tests/cache/hf-tokenizers.
 * The document is English-like prose (a fixed word list, sentences, paragraphs, numbers) generated
 * from a fixed seed, about N tokens long (400000); --text FILE encodes that file instead. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "model/tokenizer.h"

static const char *const k_help =
    "usage: bench_tokenizer [--tokens N] [--reps N] [--text FILE] [TOKENIZER ...]\n"
    "  TOKENIZER   a model folder (tokenizer.json or tokenizer.model) or a tokenizer file\n"
    "  --tokens N  length of the generated document, about N tokens (400000)\n"
    "  --reps N    repetitions, best reported (3)\n"
    "  --text FILE encode this file instead of the generated document\n";

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t g_rng = 0x9E3779B97F4A7C15ULL;
static uint32_t rnd(uint32_t n)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng % n);
}

/* English-like prose of about `bytes` bytes: common words (Zipf-ish: earlier words more often),
 * capitalised sentences with commas, numbers, quotes and paragraphs. */
static char *make_document(size_t bytes, size_t *len)
{
    static const char *const words[] = {"the",
                                        "of",
                                        "and",
                                        "to",
                                        "a",
                                        "in",
                                        "is",
                                        "that",
                                        "it",
                                        "was",
                                        "for",
                                        "on",
                                        "are",
                                        "as",
                                        "with",
                                        "his",
                                        "they",
                                        "at",
                                        "be",
                                        "this",
                                        "from",
                                        "have",
                                        "or",
                                        "by",
                                        "one",
                                        "had",
                                        "not",
                                        "but",
                                        "what",
                                        "all",
                                        "were",
                                        "when",
                                        "we",
                                        "there",
                                        "can",
                                        "an",
                                        "your",
                                        "which",
                                        "their",
                                        "said",
                                        "if",
                                        "do",
                                        "will",
                                        "each",
                                        "about",
                                        "how",
                                        "up",
                                        "out",
                                        "them",
                                        "then",
                                        "she",
                                        "many",
                                        "some",
                                        "so",
                                        "these",
                                        "would",
                                        "other",
                                        "into",
                                        "has",
                                        "more",
                                        "her",
                                        "two",
                                        "like",
                                        "him",
                                        "see",
                                        "time",
                                        "could",
                                        "no",
                                        "make",
                                        "than",
                                        "first",
                                        "been",
                                        "its",
                                        "who",
                                        "now",
                                        "people",
                                        "my",
                                        "made",
                                        "over",
                                        "did",
                                        "down",
                                        "only",
                                        "way",
                                        "find",
                                        "use",
                                        "may",
                                        "water",
                                        "long",
                                        "little",
                                        "very",
                                        "after",
                                        "words",
                                        "called",
                                        "just",
                                        "where",
                                        "most",
                                        "know",
                                        "government",
                                        "experiment",
                                        "document",
                                        "attention",
                                        "memory",
                                        "window",
                                        "beacon",
                                        "condensed",
                                        "activation",
                                        "transformer",
                                        "context",
                                        "sequence",
                                        "Cambridge",
                                        "London",
                                        "Tuesday",
                                        "understanding",
                                        "nevertheless",
                                        "extraordinary",
                                        "responsibility",
                                        "characteristics",
                                        "don't",
                                        "it's",
                                        "they're",
                                        "we'll",
                                        "I'm"};
    const size_t nw = sizeof words / sizeof *words;
    char *s = malloc(bytes + 256);
    if (!s)
        return NULL;
    size_t n = 0;
    int start = 1, in_sentence = 0;
    while (n < bytes) {
        uint32_t r = rnd(1000);
        char w[64];
        if (r < 15) {
            snprintf(w, sizeof w, "%u", rnd(100000));
        } else {
            /* square of a uniform draw: the first words of the list come most often */
            uint32_t u = rnd(nw * nw);
            uint32_t k = 0;
            while ((k + 1) * (k + 1) <= u)
                k++;
            snprintf(w, sizeof w, "%s", words[k < nw ? k : nw - 1]);
        }
        if (start && w[0] >= 'a' && w[0] <= 'z')
            w[0] = (char)(w[0] - 32);
        if (in_sentence)
            s[n++] = ' ';
        size_t l = strlen(w);
        memcpy(s + n, w, l);
        n += l;
        start = 0;
        in_sentence = 1;
        uint32_t p = rnd(100);
        if (p < 6) {
            s[n++] = ',';
        } else if (p < 14) {
            s[n++] = rnd(10) == 0 ? '?' : '.';
            start = 1;
            if (rnd(8) == 0) {
                memcpy(s + n, "\n\n", 2);
                n += 2;
                in_sentence = 0;
            }
        }
    }
    s[n] = '\0';
    *len = n;
    return s;
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    fclose(f);
    if (s) {
        s[n] = '\0';
        *len = (size_t)n;
    }
    return s;
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static void bench_one(const char *spec, const char *doc, size_t len, int reps)
{
    brt_tokenizer *tok = NULL;
    brt_err err = {0};
    double t0 = now_s();
    brt_status st = is_dir(spec) ? brt_tokenizer_load_dir(spec, &tok, &err) : brt_tokenizer_load(spec, &tok, &err);
    double load = now_s() - t0;
    if (st != BRT_OK) {
        printf("%-48s FAILED: %s\n", spec, err.msg);
        return;
    }
    double enc = 1e30, dec = 1e30;
    size_t n_ids = 0;
    for (int r = 0; r < reps; r++) {
        int32_t *ids = NULL;
        double a = now_s();
        st = brt_tokenizer_encode(tok, doc, len, 0, &ids, &n_ids, &err);
        double b = now_s();
        if (st != BRT_OK) {
            printf("%-48s FAILED: %s\n", spec, err.msg);
            brt_tokenizer_free(tok);
            return;
        }
        char *text = NULL;
        size_t tl = 0;
        st = brt_tokenizer_decode(tok, ids, n_ids, &text, &tl, &err);
        double c = now_s();
        free(text);
        free(ids);
        if (st != BRT_OK) {
            printf("%-48s FAILED: %s\n", spec, err.msg);
            brt_tokenizer_free(tok);
            return;
        }
        if (b - a < enc)
            enc = b - a;
        if (c - b < dec)
            dec = c - b;
    }
    printf("%-48s %9zu %8.2f %10.0f %8.1f %10.0f %8.2f\n", spec, n_ids, enc, (double)n_ids / enc,
           (double)len / enc / 1e6, (double)n_ids / dec, load);
    brt_tokenizer_free(tok);
}

int main(int argc, char **argv)
{
    size_t tokens = 400000;
    int reps = 3;
    const char *text_file = NULL;
    const char *specs[64];
    int n_specs = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokens") && i + 1 < argc) {
            tokens = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--text") && i + 1 < argc) {
            text_file = argv[++i];
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(k_help, stdout);
            return 0;
        } else if (argv[i][0] != '-' && n_specs < 64) {
            specs[n_specs++] = argv[i];
        } else {
            fprintf(stderr, "bench_tokenizer: unknown argument %s\n%s", argv[i], k_help);
            return 2;
        }
    }
    if (reps < 1)
        reps = 1;
    static char defaults[8][4096];
    if (n_specs == 0) {
        const char *src = BRT_SOURCE_DIR;
        snprintf(defaults[0], sizeof defaults[0], "%s/models/stories260K/tokenizer.model", src);
        snprintf(defaults[1], sizeof defaults[1], "%s/tests/data/llama2-tokenizer/tokenizer.model", src);
        specs[n_specs++] = defaults[0];
        specs[n_specs++] = defaults[1];
        static const char *const hf[] = {"gpt-2", "llama-bpe", "qwen2", "llama-spm", "smollm2"};
        for (int k = 0; k < 5; k++) {
            snprintf(defaults[2 + k], sizeof defaults[2 + k], "%s/build/tests/cache/hf-tokenizers/%s", src, hf[k]);
            if (is_dir(defaults[2 + k]))
                specs[n_specs++] = defaults[2 + k];
        }
    }
    size_t len = 0;
    char *doc = text_file ? read_all(text_file, &len) : make_document(tokens * 9 / 2, &len);
    if (!doc) {
        fprintf(stderr, "bench_tokenizer: cannot %s\n", text_file ? "read the text" : "allocate the document");
        return 1;
    }
    printf("document: %s, %zu bytes; encode = one call over all of it, single thread, best of %d\n",
           text_file ? text_file : "generated English-like prose", len, reps);
    printf("%-48s %9s %8s %10s %8s %10s %8s\n", "tokenizer", "tokens", "enc s", "enc tok/s", "enc MB/s", "dec tok/s",
           "load s");
    for (int i = 0; i < n_specs; i++)
        bench_one(specs[i], doc, len, reps);
    free(doc);
    return 0;
}
