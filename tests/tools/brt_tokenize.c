/* Test helper: a model folder's tokenizer (loaded as the runtime loads it: tokenizer.json when
 * there is one, else tokenizer.model) over a corpus of byte strings.
 *   brt_tokenize DIR --json-corpus IN.json --out OUT.json [--max N]
 *       IN.json:  {"texts": ["<hex of the text's bytes>", ...]}   (hex, so invalid UTF-8 can go in)
 *       OUT.json: {"vocab_size", "bos", "eos", "adds_bos", "load_seconds", "encode_seconds",
 *                  "results": [{"ids": [...], "decoded": "<hex>", "joined": "<hex>"}
 *                              or {"error": "...", "status": "invalid"}, ...]}
 *       each text encoded without BOS (--max N: with brt_tokenizer_encode_max's limit), decoded
 *       (brt_tokenizer_decode) and joined (brt_tokenizer_join: the stream bytes of each token)
 *   brt_tokenize DIR --text TEXT [--bos]
 *       prints the ids, then the decoded text
 * Exit 0 = done (per-text errors are in OUT.json), 2 = usage, load or IO error. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/tokenizer.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int unhex(const char *h, size_t hn, char **out, size_t *n)
{
    if (hn % 2)
        return -1;
    *n = hn / 2;
    *out = malloc(*n + 1);
    if (!*out)
        return -1;
    for (size_t i = 0; i < *n; i++) {
        unsigned v;
        if (sscanf(h + 2 * i, "%2x", &v) != 1) {
            free(*out);
            return -1;
        }
        (*out)[i] = (char)v;
    }
    (*out)[*n] = '\0';
    return 0;
}

static json_t *hex(const char *s, size_t n)
{
    char *h = malloc(2 * n + 1);
    if (!h)
        return NULL;
    for (size_t i = 0; i < n; i++)
        snprintf(h + 2 * i, 3, "%02x", (unsigned char)s[i]);
    h[2 * n] = '\0';
    json_t *j = json_stringn(h, 2 * n);
    free(h);
    return j;
}

static json_t *run_one(const brt_tokenizer *tok, const char *text, size_t len, size_t max_ids)
{
    json_t *r = json_object();
    int32_t *ids = NULL;
    size_t n = 0;
    brt_err err = {0};
    brt_status st = brt_tokenizer_encode_max(tok, text, len, 0, max_ids, &ids, &n, &err);
    if (st != BRT_OK) {
        json_object_set_new(r, "error", json_string(err.msg));
        json_object_set_new(r, "status", json_string(brt_status_name(st)));
        return r;
    }
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_integer(ids[i]));
    json_object_set_new(r, "ids", a);
    char *d = NULL;
    size_t dn = 0;
    if (brt_tokenizer_decode(tok, ids, n, &d, &dn, &err) == BRT_OK)
        json_object_set_new(r, "decoded", hex(d, dn));
    else
        json_object_set_new(r, "decode_error", json_string(err.msg));
    free(d);
    if (brt_tokenizer_join(tok, ids, n, &d, &dn, &err) == BRT_OK)
        json_object_set_new(r, "joined", hex(d, dn));
    else
        json_object_set_new(r, "join_error", json_string(err.msg));
    free(d);
    free(ids);
    return r;
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *corpus = NULL, *out = NULL, *text = NULL;
    int bos = 0;
    size_t max_ids = SIZE_MAX;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json-corpus") && i + 1 < argc)
            corpus = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc)
            out = argv[++i];
        else if (!strcmp(argv[i], "--text") && i + 1 < argc)
            text = argv[++i];
        else if (!strcmp(argv[i], "--max") && i + 1 < argc)
            max_ids = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--bos"))
            bos = 1;
        else if (!dir && argv[i][0] != '-')
            dir = argv[i];
        else {
            fprintf(stderr, "brt_tokenize: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    if (!dir || (!text && (!corpus || !out))) {
        fprintf(stderr, "usage: brt_tokenize DIR --json-corpus IN.json --out OUT.json [--max N]\n"
                        "       brt_tokenize DIR --text TEXT [--bos]\n");
        return 2;
    }
    brt_tokenizer *tok = NULL;
    brt_err err = {0};
    double t0 = now_s();
    if (brt_tokenizer_load_dir(dir, &tok, &err) != BRT_OK) {
        fprintf(stderr, "brt_tokenize: %s\n", err.msg);
        return 2;
    }
    double load_s = now_s() - t0;
    if (text) {
        int32_t *ids = NULL;
        size_t n = 0;
        if (brt_tokenizer_encode(tok, text, strlen(text), bos && brt_tokenizer_adds_bos(tok), &ids, &n, &err) !=
            BRT_OK) {
            fprintf(stderr, "brt_tokenize: %s\n", err.msg);
            brt_tokenizer_free(tok);
            return 2;
        }
        for (size_t i = 0; i < n; i++)
            printf("%s%d", i ? " " : "", ids[i]);
        printf("\n");
        char *d = NULL;
        size_t dn = 0;
        if (brt_tokenizer_decode(tok, ids, n, &d, &dn, &err) == BRT_OK)
            printf("%.*s\n", (int)dn, d);
        free(d);
        free(ids);
        brt_tokenizer_free(tok);
        return 0;
    }
    json_error_t je;
    json_t *in = json_load_file(corpus, 0, &je);
    json_t *texts = in ? json_object_get(in, "texts") : NULL;
    if (!json_is_array(texts)) {
        fprintf(stderr, "brt_tokenize: %s: want {\"texts\": [hex, ...]} (%s)\n", corpus, in ? "no texts" : je.text);
        brt_tokenizer_free(tok);
        return 2;
    }
    json_t *results = json_array();
    double t1 = now_s();
    for (size_t i = 0; i < json_array_size(texts); i++) {
        const json_t *h = json_array_get(texts, i);
        char *s = NULL;
        size_t n = 0;
        if (!json_is_string(h) || unhex(json_string_value(h), json_string_length(h), &s, &n) != 0) {
            fprintf(stderr, "brt_tokenize: %s: texts[%zu] is not a hex string\n", corpus, i);
            return 2;
        }
        json_array_append_new(results, run_one(tok, s, n, max_ids));
        free(s);
    }
    double enc_s = now_s() - t1;
    json_t *o = json_object();
    json_object_set_new(o, "vocab_size", json_integer(brt_tokenizer_vocab_size(tok)));
    json_object_set_new(o, "bos", json_integer(brt_tokenizer_bos_id(tok)));
    json_object_set_new(o, "eos", json_integer(brt_tokenizer_eos_id(tok)));
    json_object_set_new(o, "adds_bos", json_integer(brt_tokenizer_adds_bos(tok)));
    json_object_set_new(o, "load_seconds", json_real(load_s));
    json_object_set_new(o, "encode_seconds", json_real(enc_s));
    json_object_set_new(o, "results", results);
    int rc = json_dump_file(o, out, JSON_COMPACT) == 0 ? 0 : 2;
    if (rc)
        fprintf(stderr, "brt_tokenize: cannot write %s\n", out);
    json_decref(o);
    json_decref(in);
    brt_tokenizer_free(tok);
    return rc;
}
