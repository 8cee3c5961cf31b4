/* Batch JSONL parsing, result-line formatting and the results journal (runtime/api: request, batch_file, response, journal). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/batch_file.h"
#include "api/journal.h"
#include "api/response.h"

#define LINE(body) "{\"custom_id\":\"c1\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":" body "}"

/* ---- helpers ------------------------------------------------------------------------------ */

static char *tmp_path(void)
{
    char *p = strdup("/tmp/brt_batchio_XXXXXX");
    assert_non_null(p);
    int fd = mkstemp(p);
    assert_true(fd >= 0);
    close(fd);
    return p;
}

static void write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    if (len)
        *len = (size_t)n;
    return buf;
}

static brt_status parse(const char *line, brt_request *r, brt_err *e)
{
    brt_err_clear(e);
    return brt_batch_parse_line(line, strlen(line), 7, r, e);
}

/* Parse must fail with st; the message must start with "line 7: " and mention needle. */
static void expect_reject(const char *line, brt_status st, const char *needle, const char *id)
{
    brt_request r;
    brt_err e;
    brt_status got = parse(line, &r, &e);
    if (got != st || strncmp(e.msg, "line 7: ", 8) != 0 || !strstr(e.msg, needle))
        fail_msg("line %s\n  status %d (want %d), message: %s\n  (want it to mention \"%s\")", line,
                 got, st, e.msg, needle);
    assert_int_equal(r.line_no, 7);
    if (id)
        assert_string_equal(r.custom_id, id);
    else
        assert_null(r.custom_id);
    assert_null(r.prompt);
    assert_null(r.prompt_ids);
    assert_null(r.model);
    assert_int_equal(r.n_stop, 0);
    brt_request_free(&r);
}

static json_t *load(const char *line)
{
    size_t n = strlen(line);
    assert_true(n > 0 && line[n - 1] == '\n');
    assert_null(memchr(line, '\n', n - 1));
    json_error_t je;
    json_t *v = json_loads(line, 0, &je);
    if (!v)
        fail_msg("not valid JSON (%s): %s", je.text, line);
    return v;
}

/* ---- parsing ------------------------------------------------------------------------------ */

static void parse_fills_openai_defaults(void **state)
{
    (void)state;
    brt_request r;
    brt_err e;
    assert_int_equal(parse(LINE("{\"prompt\":\"Once upon\"}"), &r, &e), BRT_OK);
    assert_string_equal(r.custom_id, "c1");
    assert_int_equal(r.line_no, 7);
    assert_string_equal(r.prompt, "Once upon");
    assert_null(r.prompt_ids);
    assert_int_equal(r.n_prompt_ids, 0);
    assert_int_equal(r.max_tokens, 16);
    assert_true(r.temperature == 1.0f);
    assert_true(r.top_p == 1.0f);
    assert_int_equal(r.has_seed, 0);
    assert_int_equal(r.n_stop, 0);
    assert_null(r.stop[0]);
    assert_int_equal(r.echo, 0);
    assert_int_equal(r.logprobs, -1);
    assert_null(r.model);
    brt_request_free(&r);

    /* null is the default for every optional field */
    assert_int_equal(parse(LINE("{\"prompt\":\"x\",\"model\":null,\"max_tokens\":null,"
                                "\"temperature\":null,\"top_p\":null,\"seed\":null,\"stop\":null,"
                                "\"echo\":null,\"logprobs\":null,\"user\":null}"),
                           &r, &e),
                     BRT_OK);
    assert_int_equal(r.max_tokens, 16);
    assert_true(r.temperature == 1.0f && r.top_p == 1.0f);
    assert_int_equal(r.has_seed, 0);
    assert_int_equal(r.n_stop, 0);
    assert_int_equal(r.echo, 0);
    assert_int_equal(r.logprobs, -1);
    assert_null(r.model);
    brt_request_free(&r);
}

static void parse_reads_every_field(void **state)
{
    (void)state;
    brt_request r;
    brt_err e;
    const char *line =
        "{\"custom_id\": \"doc-1\", \"method\": \"POST\", \"url\": \"/v1/completions\", \"body\": "
        "{\"model\": \"tinystories\", \"prompt\": \"Once upon a time\", \"max_tokens\": 0, "
        "\"temperature\": 0, \"top_p\": 0.9, \"seed\": 7, \"stop\": [\"\\n\\n\", \"The end\"], "
        "\"echo\": true, \"logprobs\": 5, \"user\": \"u1\", \"frequency_penalty\": 0, "
        "\"presence_penalty\": 0.0}}";
    assert_int_equal(parse(line, &r, &e), BRT_OK);
    assert_string_equal(r.custom_id, "doc-1");
    assert_string_equal(r.model, "tinystories");
    assert_string_equal(r.prompt, "Once upon a time");
    assert_int_equal(r.max_tokens, 0);
    assert_true(r.temperature == 0.0f);
    assert_true(r.top_p == 0.9f);
    assert_int_equal(r.has_seed, 1);
    assert_int_equal(r.seed, 7);
    assert_int_equal(r.n_stop, 2);
    assert_string_equal(r.stop[0], "\n\n");
    assert_string_equal(r.stop[1], "The end");
    assert_int_equal(r.echo, 1);
    assert_int_equal(r.logprobs, 5);
    brt_request_free(&r);

    /* stop as a single string; temperature given as an integer; a negative seed wraps */
    assert_int_equal(parse(LINE("{\"prompt\":\"x\",\"stop\":\"END\",\"temperature\":2,\"top_p\":1,"
                                "\"seed\":-1,\"logprobs\":0}"),
                           &r, &e),
                     BRT_OK);
    assert_int_equal(r.n_stop, 1);
    assert_string_equal(r.stop[0], "END");
    assert_true(r.temperature == 2.0f);
    assert_int_equal(r.seed, UINT64_MAX);
    assert_int_equal(r.logprobs, 0);
    brt_request_free(&r);

    /* four stop sequences is the limit, an empty array means none */
    assert_int_equal(parse(LINE("{\"prompt\":\"x\",\"stop\":[\"a\",\"b\",\"c\",\"d\"]}"), &r, &e),
                     BRT_OK);
    assert_int_equal(r.n_stop, 4);
    assert_string_equal(r.stop[3], "d");
    brt_request_free(&r);
    assert_int_equal(parse(LINE("{\"prompt\":\"x\",\"stop\":[]}"), &r, &e), BRT_OK);
    assert_int_equal(r.n_stop, 0);
    brt_request_free(&r);
}

static void parse_takes_token_id_prompt(void **state)
{
    (void)state;
    brt_request r;
    brt_err e;
    assert_int_equal(parse(LINE("{\"prompt\":[1, 403, 0, 2147483647]}"), &r, &e), BRT_OK);
    assert_null(r.prompt);
    assert_int_equal(r.n_prompt_ids, 4);
    assert_int_equal(r.prompt_ids[0], 1);
    assert_int_equal(r.prompt_ids[1], 403);
    assert_int_equal(r.prompt_ids[2], 0);
    assert_int_equal(r.prompt_ids[3], INT32_MAX);
    brt_request_free(&r);
    assert_null(r.prompt_ids);
}

static void parse_accepts_noop_values_of_unsupported_fields(void **state)
{
    (void)state;
    brt_request r;
    brt_err e;
    assert_int_equal(parse(LINE("{\"prompt\":\"x\",\"n\":1,\"best_of\":1,\"stream\":false,"
                                "\"suffix\":null,\"logit_bias\":{},\"stream_options\":null}"),
                           &r, &e),
                     BRT_OK);
    brt_request_free(&r);
}

static void parse_rejects_bad_lines_naming_line_and_field(void **state)
{
    (void)state;
    /* not JSON, not an object: no custom_id can be read */
    expect_reject("{\"custom_id\":\"c1\",", BRT_ERR_FORMAT, "invalid JSON at column", NULL);
    expect_reject("not json", BRT_ERR_FORMAT, "invalid JSON", NULL);
    expect_reject("[1,2]", BRT_ERR_FORMAT, "object", NULL);
    expect_reject("42", BRT_ERR_FORMAT, "object", NULL);
    expect_reject("{\"custom_id\":\"c1\",\"custom_id\":\"c2\"}", BRT_ERR_FORMAT, "duplicate", NULL);

    /* custom_id */
    expect_reject("{\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"prompt\":\"x\"}}",
                  BRT_ERR_INVALID, "custom_id is missing", NULL);
    expect_reject("{\"custom_id\":\"\",\"method\":\"POST\",\"url\":\"/v1/completions\","
                  "\"body\":{\"prompt\":\"x\"}}",
                  BRT_ERR_INVALID, "custom_id is empty", NULL);
    expect_reject("{\"custom_id\":12,\"method\":\"POST\",\"url\":\"/v1/completions\","
                  "\"body\":{\"prompt\":\"x\"}}",
                  BRT_ERR_INVALID, "custom_id must be a string", NULL);

    /* envelope: the custom_id is still handed back */
    expect_reject("{\"custom_id\":\"c1\",\"method\":\"GET\",\"url\":\"/v1/completions\","
                  "\"body\":{\"prompt\":\"x\"}}",
                  BRT_ERR_INVALID, "method", "c1");
    expect_reject("{\"custom_id\":\"c1\",\"url\":\"/v1/completions\",\"body\":{\"prompt\":\"x\"}}",
                  BRT_ERR_INVALID, "method is missing", "c1");
    expect_reject("{\"custom_id\":\"c1\",\"method\":\"POST\",\"url\":\"/v1/embeddings\","
                  "\"body\":{\"input\":\"x\"}}",
                  BRT_ERR_UNSUPPORTED, "url", "c1");
    expect_reject("{\"custom_id\":\"c1\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
                  "\"body\":{\"prompt\":\"x\"}}",
                  BRT_ERR_INVALID, "body.prompt belongs to /v1/completions", "c1");
    expect_reject("{\"custom_id\":\"c1\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
                  "\"body\":{\"max_tokens\":3}}",
                  BRT_ERR_INVALID, "body.messages is missing", "c1");
    expect_reject("{\"custom_id\":\"c1\",\"method\":\"POST\",\"url\":\"/v1/completions\","
                  "\"body\":{\"prompt\":\"x\",\"stream\":true}}",
                  BRT_ERR_UNSUPPORTED, "body.stream", "c1");
    expect_reject("{\"custom_id\":\"c1\",\"method\":\"POST\",\"body\":{\"prompt\":\"x\"}}",
                  BRT_ERR_INVALID, "url is missing", "c1");
    expect_reject("{\"custom_id\":\"c1\",\"method\":\"POST\",\"url\":\"/v1/completions\"}",
                  BRT_ERR_INVALID, "body is missing", "c1");
    expect_reject(LINE("\"Once upon\""), BRT_ERR_INVALID, "body must be an object", "c1");
    expect_reject("{\"custom_id\":\"c1\",\"method\":\"POST\",\"url\":\"/v1/completions\","
                  "\"body\":{\"prompt\":\"x\"},\"priority\":3}",
                  BRT_ERR_INVALID, "\"priority\"", "c1");

    /* body fields */
    expect_reject(LINE("{\"prompt\":\"x\",\"temprature\":0.5}"), BRT_ERR_INVALID,
                  "unknown field body.temprature", "c1");
    expect_reject(LINE("{\"prompt\":\"x\",\"n\":2}"), BRT_ERR_UNSUPPORTED, "body.n is not supported",
                  "c1");
    expect_reject(LINE("{\"prompt\":\"x\",\"best_of\":3}"), BRT_ERR_UNSUPPORTED,
                  "body.best_of is not supported", "c1");
    expect_reject(LINE("{\"prompt\":\"x\",\"suffix\":\"end\"}"), BRT_ERR_UNSUPPORTED,
                  "body.suffix is not supported", "c1");
    expect_reject(LINE("{\"prompt\":\"x\",\"logit_bias\":{\"50256\":-100}}"), BRT_ERR_UNSUPPORTED,
                  "body.logit_bias is not supported", "c1");
    expect_reject(LINE("{\"prompt\":\"x\",\"stream\":true}"), BRT_ERR_UNSUPPORTED,
                  "body.stream is not supported", "c1");
    expect_reject(LINE("{\"prompt\":\"x\",\"frequency_penalty\":0.5}"), BRT_ERR_UNSUPPORTED,
                  "body.frequency_penalty", "c1");
    expect_reject(LINE("{\"prompt\":\"x\",\"presence_penalty\":-1}"), BRT_ERR_UNSUPPORTED,
                  "body.presence_penalty", "c1");
    expect_reject(LINE("{\"prompt\":\"x\",\"presence_penalty\":\"0\"}"), BRT_ERR_INVALID,
                  "body.presence_penalty must be a number", "c1");

    /* prompt */
    expect_reject(LINE("{\"max_tokens\":4}"), BRT_ERR_INVALID, "body.prompt is missing", "c1");
    expect_reject(LINE("{\"prompt\":\"\"}"), BRT_ERR_INVALID, "body.prompt is empty", "c1");
    expect_reject(LINE("{\"prompt\":[]}"), BRT_ERR_INVALID, "body.prompt is empty", "c1");
    expect_reject(LINE("{\"prompt\":null}"), BRT_ERR_INVALID, "body.prompt", "c1");
    expect_reject(LINE("{\"prompt\":[\"a\",\"b\"]}"), BRT_ERR_INVALID, "one prompt per line", "c1");
    expect_reject(LINE("{\"prompt\":[\"a\"]}"), BRT_ERR_INVALID, "one prompt per line", "c1");
    expect_reject(LINE("{\"prompt\":[[1,2],[3]]}"), BRT_ERR_INVALID, "one prompt per line", "c1");
    expect_reject(LINE("{\"prompt\":[1,\"a\"]}"), BRT_ERR_INVALID, "body.prompt[1]", "c1");
    expect_reject(LINE("{\"prompt\":[1,2.5]}"), BRT_ERR_INVALID, "body.prompt[1]", "c1");
    expect_reject(LINE("{\"prompt\":[5,-1]}"), BRT_ERR_RANGE, "body.prompt[1]", "c1");
    expect_reject(LINE("{\"prompt\":[2147483648]}"), BRT_ERR_RANGE, "body.prompt[0]", "c1");
    expect_reject(LINE("{\"prompt\":7}"), BRT_ERR_INVALID, "body.prompt must be", "c1");

    /* types and ranges */
    expect_reject(LINE("{\"prompt\":\"x\",\"model\":3}"), BRT_ERR_INVALID, "body.model", "c1");
    expect_reject(LINE("{\"prompt\":\"x\",\"max_tokens\":\"16\"}"), BRT_ERR_INVALID,
                  "body.max_tokens must be an integer", "c1");
    expect_reject(LINE("{\"prompt\":\"x\",\"max_tokens\":16.5}"), BRT_ERR_INVALID,
                  "body.max_tokens must be an integer", "c1");
    expect_reject(LINE("{\"prompt\":\"x\",\"max_tokens\":-1}"), BRT_ERR_RANGE, "body.max_tokens",
                  "c1");
    expect_reject(LINE("{\"prompt\":\"x\",\"max_tokens\":4294967296}"), BRT_ERR_RANGE,
                  "body.max_tokens", "c1");
    expect_reject(LINE("{\"prompt\":\"x\",\"temperature\":\"hot\"}"), BRT_ERR_INVALID,
                  "body.temperature must be a number", "c1");
    expect_reject(LINE("{\"prompt\":\"x\",\"temperature\":2.01}"), BRT_ERR_RANGE,
                  "body.temperature", "c1");
    expect_reject(LINE("{\"prompt\":\"x\",\"temperature\":-0.1}"), BRT_ERR_RANGE,
                  "body.temperature", "c1");
    expect_reject(LINE("{\"prompt\":\"x\",\"top_p\":0}"), BRT_ERR_RANGE, "body.top_p", "c1");
    expect_reject(LINE("{\"prompt\":\"x\",\"top_p\":1e-300}"), BRT_ERR_RANGE, "body.top_p", "c1");
    expect_reject(LINE("{\"prompt\":\"x\",\"top_p\":1.5}"), BRT_ERR_RANGE, "body.top_p", "c1");
    expect_reject(LINE("{\"prompt\":\"x\",\"top_p\":true}"), BRT_ERR_INVALID, "body.top_p", "c1");
    expect_reject(LINE("{\"prompt\":\"x\",\"seed\":1.5}"), BRT_ERR_INVALID,
                  "body.seed must be an integer", "c1");
    expect_reject(LINE("{\"prompt\":\"x\",\"seed\":\"7\"}"), BRT_ERR_INVALID, "body.seed", "c1");
    expect_reject(LINE("{\"prompt\":\"x\",\"stop\":\"\"}"), BRT_ERR_INVALID, "body.stop", "c1");
    expect_reject(LINE("{\"prompt\":\"x\",\"stop\":[\"a\",\"\"]}"), BRT_ERR_INVALID, "body.stop[1]",
                  "c1");
    expect_reject(LINE("{\"prompt\":\"x\",\"stop\":[\"a\",3]}"), BRT_ERR_INVALID, "body.stop[1]",
                  "c1");
    expect_reject(LINE("{\"prompt\":\"x\",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}"),
                  BRT_ERR_RANGE, "body.stop", "c1");
    expect_reject(LINE("{\"prompt\":\"x\",\"stop\":5}"), BRT_ERR_INVALID, "body.stop", "c1");
    expect_reject(LINE("{\"prompt\":\"x\",\"echo\":\"yes\"}"), BRT_ERR_INVALID,
                  "body.echo must be a boolean", "c1");
    expect_reject(LINE("{\"prompt\":\"x\",\"echo\":1}"), BRT_ERR_INVALID, "body.echo", "c1");
    expect_reject(LINE("{\"prompt\":\"x\",\"logprobs\":6}"), BRT_ERR_RANGE, "body.logprobs", "c1");
    expect_reject(LINE("{\"prompt\":\"x\",\"logprobs\":-1}"), BRT_ERR_RANGE, "body.logprobs", "c1");
    expect_reject(LINE("{\"prompt\":\"x\",\"logprobs\":true}"), BRT_ERR_INVALID, "body.logprobs",
                  "c1");
    expect_reject(LINE("{\"prompt\":\"x\",\"user\":42}"), BRT_ERR_INVALID, "body.user", "c1");
}

/* ---- whole files -------------------------------------------------------------------------- */

static void read_keeps_going_past_bad_lines(void **state)
{
    (void)state;
    char *path = tmp_path();
    const char *text =
        "\xEF\xBB\xBF{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/completions\","
        "\"body\":{\"prompt\":\"one\"}}\r\n"                                           /* 1 */
        "\n"                                                                           /* 2 */
        "   \t\n"                                                                      /* 3 */
        "{\"custom_id\":\"b\",\"method\":\"POST\",\"url\":\"/v1/completions\","
        "\"body\":{\"prompt\":\"two\",\"max_tokens\":-5}}\n"                           /* 4 */
        "{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/completions\","
        "\"body\":{\"prompt\":\"again\"}}\n"                                           /* 5 */
        "{this is not json\n"                                                          /* 6 */
        "{\"custom_id\":\"line-6\",\"method\":\"POST\",\"url\":\"/v1/completions\","
        "\"body\":{\"prompt\":\"taken\"}}\n"                                           /* 7 */
        "{\"custom_id\":\"b\",\"method\":\"POST\",\"url\":\"/v1/completions\","
        "\"body\":{\"prompt\":\"b again\",\"n\":3}}\n"                                 /* 8 */
        "{\"custom_id\":\"c\",\"method\":\"POST\",\"url\":\"/v1/completions\","
        "\"body\":{\"prompt\":[5,6,7]}}";                                              /* 9, no \n */
    write_file(path, text, strlen(text));
    brt_batch b;
    brt_err e;
    assert_int_equal(brt_batch_read(path, &b, &e), BRT_OK);

    assert_int_equal(b.n, 3);
    assert_string_equal(b.reqs[0].custom_id, "a");
    assert_int_equal(b.reqs[0].line_no, 1);
    assert_string_equal(b.reqs[0].prompt, "one");
    assert_string_equal(b.reqs[1].custom_id, "line-6");
    assert_int_equal(b.reqs[1].line_no, 7);
    assert_string_equal(b.reqs[2].custom_id, "c");
    assert_int_equal(b.reqs[2].line_no, 9);
    assert_int_equal(b.reqs[2].n_prompt_ids, 3);

    assert_int_equal(b.n_bad, 4);
    /* bad line with a readable id keeps it */
    assert_int_equal(b.bad[0].line_no, 4);
    assert_string_equal(b.bad[0].custom_id, "b");
    assert_int_equal(b.bad[0].status, BRT_ERR_RANGE);
    assert_non_null(strstr(b.bad[0].message, "line 4: body.max_tokens"));
    /* a repeat is reported under a synthetic id and names the first line */
    assert_int_equal(b.bad[1].line_no, 5);
    assert_string_equal(b.bad[1].custom_id, "line-5");
    assert_int_equal(b.bad[1].status, BRT_ERR_INVALID);
    assert_non_null(strstr(b.bad[1].message, "line 5: "));
    assert_non_null(strstr(b.bad[1].message, "duplicates line 1"));
    /* unreadable id: synthetic, and a real "line-6" later in the file wins over it */
    assert_int_equal(b.bad[2].line_no, 6);
    assert_string_equal(b.bad[2].custom_id, "line-6#2");
    assert_int_equal(b.bad[2].status, BRT_ERR_FORMAT);
    assert_non_null(strstr(b.bad[2].message, "line 6: invalid JSON"));
    /* a bad line repeating an id: its own error plus the repeat */
    assert_int_equal(b.bad[3].line_no, 8);
    assert_string_equal(b.bad[3].custom_id, "line-8");
    assert_int_equal(b.bad[3].status, BRT_ERR_UNSUPPORTED);
    assert_non_null(strstr(b.bad[3].message, "body.n"));
    assert_non_null(strstr(b.bad[3].message, "duplicates line 4"));

    brt_batch_free(&b);
    assert_int_equal(b.n + b.n_bad, 0);
    unlink(path);
    free(path);
}

static void read_handles_5mb_prompt(void **state)
{
    (void)state;
    char *path = tmp_path();
    size_t plen = 5u << 20;
    const char *head = "{\"custom_id\":\"big\",\"method\":\"POST\",\"url\":\"/v1/completions\","
                       "\"body\":{\"prompt\":\"";
    const char *tail = "\",\"max_tokens\":1}}\n"
                       "{\"custom_id\":\"small\",\"method\":\"POST\",\"url\":\"/v1/completions\","
                       "\"body\":{\"prompt\":\"s\"}}\n";
    size_t hl = strlen(head), tl = strlen(tail);
    char *text = malloc(hl + plen + tl);
    assert_non_null(text);
    memcpy(text, head, hl);
    for (size_t i = 0; i < plen; i++)
        text[hl + i] = (char)('a' + i % 26);
    memcpy(text + hl + plen, tail, tl);
    write_file(path, text, hl + plen + tl);
    free(text);

    brt_batch b;
    brt_err e;
    assert_int_equal(brt_batch_read(path, &b, &e), BRT_OK);
    assert_int_equal(b.n, 2);
    assert_int_equal(b.n_bad, 0);
    assert_int_equal(strlen(b.reqs[0].prompt), plen);
    assert_int_equal(b.reqs[0].prompt[plen - 1], 'a' + (plen - 1) % 26);
    assert_string_equal(b.reqs[1].custom_id, "small");
    assert_int_equal(b.reqs[1].line_no, 2);
    brt_batch_free(&b);
    unlink(path);
    free(path);
}

static void read_missing_file_is_io_error(void **state)
{
    (void)state;
    brt_batch b;
    brt_err e;
    brt_err_clear(&e);
    assert_int_equal(brt_batch_read("/nonexistent/dir/jobs.jsonl", &b, &e), BRT_ERR_IO);
    assert_non_null(strstr(e.msg, "/nonexistent/dir/jobs.jsonl"));
    assert_int_equal(b.n + b.n_bad, 0);
}

/* ---- output lines ------------------------------------------------------------------------- */

static void format_success_without_logprobs_is_exact(void **state)
{
    (void)state;
    brt_completion c = {.text = "Once upon a time\n\"there\"", .text_len = 24,
                        .finish_reason = "length", .prompt_tokens = 5, .completion_tokens = 16};
    char *line;
    brt_err e;
    assert_int_equal(brt_batch_format_success("doc-1", "tinystories-260K", 1700000000, &c, &line, &e),
                     BRT_OK);
    assert_string_equal(
        line,
        "{\"id\":\"batch_req_doc-1\",\"custom_id\":\"doc-1\",\"response\":{\"status_code\":200,"
        "\"request_id\":\"req_doc-1\",\"body\":{\"id\":\"cmpl-doc-1\",\"object\":\"text_completion\","
        "\"created\":1700000000,\"model\":\"tinystories-260K\",\"choices\":[{\"index\":0,"
        "\"text\":\"Once upon a time\\n\\\"there\\\"\",\"finish_reason\":\"length\",\"logprobs\":null}],"
        "\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":16,\"total_tokens\":21,"
        "\"prompt_tokens_details\":{\"cached_tokens\":0}}}},"
        "\"error\":null}\n");
    json_decref(load(line));
    free(line);
}

static void format_success_with_logprobs_parses_back(void **state)
{
    (void)state;
    const char *tokens[] = {"Once", " upon", "\xe2\x80", "\x99s\\", "\\\x01"};
    const float lps[] = {NAN, -0.123456789f, -2.5f, -INFINITY, -7.0f};
    const int32_t offs[] = {0, 4, 9, 9, 11};
    /* top_k = 2: row 0 is the echo'd first token (null), row 2 has one NaN entry, row 3 all NaN,
     * row 4 renders two byte tokens to the same key (first kept) */
    const char *const top_tokens[] = {"x", "y", " upon", " on", "\xe2\x80", "zz", "a", "b",
                                      "\xff", "\xff"};
    const float top_lps[] = {NAN, NAN, -0.123456789f, -3.0f, -2.5f, NAN, NAN, NAN, -1.0f, -1.5f};
    const char text[] = "Once upon\xe2\x80\x99s\\\x01";
    brt_completion c = {.text = text, .text_len = sizeof text - 1, .finish_reason = "stop",
                        .prompt_tokens = 2, .completion_tokens = 3, .n_tokens = 5,
                        .tokens = tokens, .token_logprobs = lps, .text_offset = offs, .top_k = 2,
                        .top_tokens = top_tokens, .top_logprobs = top_lps};
    char *line;
    brt_err e;
    assert_int_equal(brt_batch_format_success("doc-2", "m", 5, &c, &line, &e), BRT_OK);
    json_t *root = load(line);

    /* exactly the expected keys, in order */
    const char *want_top[] = {"id", "custom_id", "response", "error"};
    size_t i = 0;
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) assert_string_equal(key, want_top[i++]);
    assert_int_equal(i, 4);
    assert_true(json_is_null(json_object_get(root, "error")));
    json_t *resp = json_object_get(root, "response");
    assert_int_equal(json_object_size(resp), 3);
    assert_int_equal(json_integer_value(json_object_get(resp, "status_code")), 200);
    assert_string_equal(json_string_value(json_object_get(resp, "request_id")), "req_doc-2");
    json_t *body = json_object_get(resp, "body");
    const char *want_body[] = {"id", "object", "created", "model", "choices", "usage"};
    i = 0;
    json_object_foreach(body, key, v) assert_string_equal(key, want_body[i++]);
    assert_int_equal(i, 6);
    assert_string_equal(json_string_value(json_object_get(body, "id")), "cmpl-doc-2");
    assert_int_equal(json_integer_value(json_object_get(body, "created")), 5);
    json_t *usage = json_object_get(body, "usage");
    assert_int_equal(json_integer_value(json_object_get(usage, "total_tokens")), 5);
    json_t *choices = json_object_get(body, "choices");
    assert_int_equal(json_array_size(choices), 1);
    json_t *ch = json_array_get(choices, 0);
    const char *want_choice[] = {"index", "text", "finish_reason", "logprobs"};
    i = 0;
    json_object_foreach(ch, key, v) assert_string_equal(key, want_choice[i++]);
    assert_int_equal(i, 4);
    assert_string_equal(json_string_value(json_object_get(ch, "finish_reason")), "stop");
    assert_int_equal(json_string_length(json_object_get(ch, "text")), sizeof text - 1);
    assert_memory_equal(json_string_value(json_object_get(ch, "text")), text, sizeof text - 1);

    json_t *lp = json_object_get(ch, "logprobs");
    const char *want_lp[] = {"tokens", "token_logprobs", "top_logprobs", "text_offset"};
    i = 0;
    json_object_foreach(lp, key, v) assert_string_equal(key, want_lp[i++]);
    assert_int_equal(i, 4);

    /* invalid UTF-8 tokens in OpenAI's escaped form; valid ones (even with controls) verbatim */
    json_t *toks = json_object_get(lp, "tokens");
    assert_int_equal(json_array_size(toks), 5);
    assert_string_equal(json_string_value(json_array_get(toks, 0)), "Once");
    assert_string_equal(json_string_value(json_array_get(toks, 2)), "bytes:\\xe2\\x80");
    assert_string_equal(json_string_value(json_array_get(toks, 3)), "bytes:\\x99s\\\\");
    assert_string_equal(json_string_value(json_array_get(toks, 4)), "\\\x01");

    /* NaN and -inf -> null; floats round-trip to the same float */
    json_t *tl = json_object_get(lp, "token_logprobs");
    assert_true(json_is_null(json_array_get(tl, 0)));
    assert_true((float)json_real_value(json_array_get(tl, 1)) == -0.123456789f);
    assert_true((float)json_real_value(json_array_get(tl, 2)) == -2.5f);
    assert_true(json_is_null(json_array_get(tl, 3)));

    json_t *top = json_object_get(lp, "top_logprobs");
    assert_int_equal(json_array_size(top), 5);
    assert_true(json_is_null(json_array_get(top, 0)));
    json_t *row1 = json_array_get(top, 1);
    assert_int_equal(json_object_size(row1), 2);
    assert_true((float)json_real_value(json_object_get(row1, " upon")) == -0.123456789f);
    assert_true((float)json_real_value(json_object_get(row1, " on")) == -3.0f);
    json_t *row2 = json_array_get(top, 2);
    assert_int_equal(json_object_size(row2), 1);
    assert_non_null(json_object_get(row2, "bytes:\\xe2\\x80"));
    assert_true(json_is_null(json_array_get(top, 3)));
    json_t *row4 = json_array_get(top, 4);
    assert_int_equal(json_object_size(row4), 1);
    assert_true((float)json_real_value(json_object_get(row4, "bytes:\\xff")) == -1.0f);

    json_t *to = json_object_get(lp, "text_offset");
    for (size_t k = 0; k < 5; k++)
        assert_int_equal(json_integer_value(json_array_get(to, k)), offs[k]);
    json_decref(root);
    free(line);
}

static void format_success_replaces_invalid_utf8_text(void **state)
{
    (void)state;
    const char text[] = "ok\xe2\x80"; /* a completion cut mid-character */
    brt_completion c = {.text = text, .text_len = sizeof text - 1, .finish_reason = "length"};
    char *line;
    brt_err e;
    assert_int_equal(brt_batch_format_success("d", "m", 0, &c, &line, &e), BRT_OK);
    json_t *root = load(line);
    json_t *ch = json_array_get(
        json_object_get(json_object_get(json_object_get(root, "response"), "body"), "choices"), 0);
    /* one U+FFFD for the cut character (its maximal subpart), as Python's and the tokenizers
     * library's lossy decoding give */
    assert_string_equal(json_string_value(json_object_get(ch, "text")), "ok\xEF\xBF\xBD");
    json_decref(root);
    free(line);

    /* top_k 0 (logprobs: 0): rows are null, tokens still listed */
    const char *tokens[] = {"ok"};
    const float lps[] = {-1.0f};
    const int32_t offs[] = {0};
    brt_completion c2 = {.text = "ok", .text_len = 2, .finish_reason = "stop", .n_tokens = 1,
                         .tokens = tokens, .token_logprobs = lps, .text_offset = offs};
    assert_int_equal(brt_batch_format_success("d", "m", 0, &c2, &line, &e), BRT_OK);
    assert_non_null(strstr(line, "\"logprobs\":{\"tokens\":[\"ok\"],\"token_logprobs\":[-1.0],"
                                 "\"top_logprobs\":[null],\"text_offset\":[0]}"));
    json_decref(load(line));
    free(line);

    c2.finish_reason = "eos";
    brt_err_clear(&e);
    assert_int_equal(brt_batch_format_success("d", "m", 0, &c2, &line, &e), BRT_ERR_INVALID);
    assert_non_null(strstr(e.msg, "finish_reason"));
    assert_null(line);
}

static void format_error_is_exact(void **state)
{
    (void)state;
    char *line;
    brt_err e;
    assert_int_equal(brt_batch_format_error("doc-3", "invalid_request",
                                            "line 3: body.max_tokens = -1 is out of range", &line,
                                            &e),
                     BRT_OK);
    assert_string_equal(line, "{\"id\":\"batch_req_doc-3\",\"custom_id\":\"doc-3\",\"response\":null,"
                              "\"error\":{\"code\":\"invalid_request\",\"message\":\"line 3: "
                              "body.max_tokens = -1 is out of range\"}}\n");
    free(line);

    /* a message cut mid-character by a fixed buffer still gives valid JSON */
    assert_int_equal(brt_batch_format_error("line-4", "format_error", "bad \"x\"\n\xc3", &line, &e),
                     BRT_OK);
    json_t *root = load(line);
    assert_string_equal(json_string_value(json_object_get(json_object_get(root, "error"), "message")),
                        "bad \"x\"\n\xEF\xBF\xBD");
    json_decref(root);
    free(line);
}

/* ---- journal ------------------------------------------------------------------------------ */

static char *error_line(const char *id)
{
    char *line;
    brt_err e;
    assert_int_equal(brt_batch_format_error(id, "x", "m", &line, &e), BRT_OK);
    return line;
}

static char *success_line(const char *id)
{
    brt_completion c = {.text = "t", .text_len = 1, .finish_reason = "stop", .prompt_tokens = 1,
                        .completion_tokens = 1};
    char *line;
    brt_err e;
    assert_int_equal(brt_batch_format_success(id, "m", 1, &c, &line, &e), BRT_OK);
    return line;
}

static void append_ok(brt_journal *j, const char *id, int error)
{
    char *line = error ? error_line(id) : success_line(id);
    brt_err e;
    brt_err_clear(&e);
    if (brt_journal_append(j, id, line, &e) != BRT_OK)
        fail_msg("append %s: %s", id, e.msg);
    free(line);
}

/* every line of the file parses and ids are unique */
static size_t check_file_valid(const char *path)
{
    size_t len;
    char *text = read_file(path, &len);
    assert_true(len == 0 || text[len - 1] == '\n');
    size_t n = 0;
    char *save = NULL;
    for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        json_error_t je;
        json_t *v = json_loads(l, 0, &je);
        if (!v)
            fail_msg("line %zu invalid: %s", n + 1, je.text);
        json_decref(v);
        n++;
    }
    free(text);
    return n;
}

static brt_journal *open_ok(const char *path)
{
    brt_journal *j;
    brt_err e;
    brt_err_clear(&e);
    if (brt_journal_open(path, &j, &e) != BRT_OK)
        fail_msg("journal open: %s", e.msg);
    return j;
}

static void journal_fresh_append_reopen(void **state)
{
    (void)state;
    char *path = tmp_path();
    unlink(path); /* the journal creates it */
    brt_journal *j = open_ok(path);
    assert_int_equal(brt_journal_n_done(j), 0);
    assert_int_equal(brt_journal_truncated_bytes(j), 0);
    append_ok(j, "a", 0);
    append_ok(j, "b", 1);
    append_ok(j, "c", 0);
    assert_true(brt_journal_is_done(j, "b"));
    assert_false(brt_journal_is_done(j, "d"));
    brt_journal_close(j);
    assert_int_equal(check_file_valid(path), 3);

    j = open_ok(path);
    assert_int_equal(brt_journal_n_done(j), 3);
    assert_int_equal(brt_journal_truncated_bytes(j), 0);
    assert_true(brt_journal_is_done(j, "a"));
    assert_true(brt_journal_is_done(j, "b")); /* error lines count as done */
    assert_true(brt_journal_is_done(j, "c"));
    assert_false(brt_journal_is_done(j, "d"));
    assert_false(brt_journal_is_done(j, NULL));
    append_ok(j, "d", 0);
    brt_journal_close(j);
    assert_int_equal(check_file_valid(path), 4);
    j = open_ok(path);
    assert_int_equal(brt_journal_n_done(j), 4);
    brt_journal_close(j);
    unlink(path);
    free(path);
}

/* A completion holding a NUL byte (a <0x00> byte-fallback token) is written as \u0000; the rerun
 * must read that line back as done, not refuse the whole output as corrupt. */
static void journal_reads_back_text_with_nul_byte(void **state)
{
    (void)state;
    char *path = tmp_path();
    unlink(path);
    brt_journal *j = open_ok(path);
    const char text[] = {'a', '\0', 'b'};
    brt_completion c = {.text = text, .text_len = 3, .finish_reason = "length", .prompt_tokens = 1,
                        .completion_tokens = 3};
    char *line;
    brt_err e;
    assert_int_equal(brt_batch_format_success("nul", "m", 1, &c, &line, &e), BRT_OK);
    assert_non_null(strstr(line, "\\u0000"));
    assert_int_equal(brt_journal_append(j, "nul", line, &e), BRT_OK);
    free(line);
    append_ok(j, "after", 0);
    brt_journal_close(j);
    brt_err_clear(&e);
    assert_int_equal(brt_journal_open(path, &j, &e), BRT_OK);
    assert_int_equal(brt_journal_n_done(j), 2);
    assert_true(brt_journal_is_done(j, "nul"));
    assert_true(brt_journal_is_done(j, "after"));
    assert_int_equal(brt_journal_truncated_bytes(j), 0);
    brt_journal_close(j);
    unlink(path);
    free(path);
}

static void journal_refuses_duplicate_and_malformed_appends(void **state)
{
    (void)state;
    char *path = tmp_path();
    brt_journal *j = open_ok(path); /* an existing empty file */
    append_ok(j, "a", 0);
    char *line = success_line("a");
    brt_err e;
    brt_err_clear(&e);
    assert_int_equal(brt_journal_append(j, "a", line, &e), BRT_ERR_INTERNAL);
    assert_non_null(strstr(e.msg, "a"));
    free(line);
    assert_int_equal(brt_journal_append(j, "b", "{\"custom_id\":\"b\"}", &e), BRT_ERR_INVALID);
    assert_int_equal(brt_journal_append(j, "b", "{}\n{}\n", &e), BRT_ERR_INVALID);
    assert_false(brt_journal_is_done(j, "b"));

    /* a second writer on the same output is refused while the first holds it */
    brt_journal *j2 = NULL;
    brt_err_clear(&e);
    assert_int_equal(brt_journal_open(path, &j2, &e), BRT_ERR_IO);
    assert_non_null(strstr(e.msg, "lock"));
    assert_null(j2);
    brt_journal_close(j);
    assert_int_equal(check_file_valid(path), 1);
    unlink(path);
    free(path);
}

static void journal_cuts_torn_tail_without_newline(void **state)
{
    (void)state;
    char *path = tmp_path();
    brt_journal *j = open_ok(path);
    append_ok(j, "a", 0);
    append_ok(j, "b", 0);
    brt_journal_close(j);
    size_t good;
    free(read_file(path, &good));

    /* a crash part-way through the third line */
    char *third = success_line("c");
    size_t torn = strlen(third) / 2;
    FILE *f = fopen(path, "ab");
    fwrite(third, 1, torn, f);
    fclose(f);

    j = open_ok(path);
    assert_int_equal(brt_journal_truncated_bytes(j), torn);
    assert_int_equal(brt_journal_n_done(j), 2);
    assert_false(brt_journal_is_done(j, "c"));
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal((size_t)sb.st_size, good);
    append_ok(j, "c", 0); /* redone */
    brt_journal_close(j);
    assert_int_equal(check_file_valid(path), 3);
    free(third);

    /* a complete line that only lost its newline is still torn: redo it */
    char *fourth = success_line("d");
    f = fopen(path, "ab");
    fwrite(fourth, 1, strlen(fourth) - 1, f);
    fclose(f);
    j = open_ok(path);
    assert_int_equal(brt_journal_truncated_bytes(j), strlen(fourth) - 1);
    assert_false(brt_journal_is_done(j, "d"));
    assert_int_equal(brt_journal_n_done(j), 3);
    brt_journal_close(j);
    free(fourth);

    /* zeros where a crashed append's data never reached the disk */
    f = fopen(path, "ab");
    char zeros[300] = {0};
    fwrite(zeros, 1, sizeof zeros, f);
    fclose(f);
    j = open_ok(path);
    assert_int_equal(brt_journal_truncated_bytes(j), sizeof zeros);
    assert_int_equal(brt_journal_n_done(j), 3);
    brt_journal_close(j);
    assert_int_equal(check_file_valid(path), 3);
    unlink(path);
    free(path);
}

static void journal_cuts_invalid_last_line_with_newline(void **state)
{
    (void)state;
    char *path = tmp_path();
    brt_journal *j = open_ok(path);
    append_ok(j, "a", 0);
    brt_journal_close(j);
    const char *bad[] = {"{\"id\":\"batch_req_b\",\"custom_id\":\"b\",\"resp\n", "[1,2]\n",
                         "{\"response\":null,\"error\":null}\n"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        FILE *f = fopen(path, "ab");
        fputs(bad[k], f);
        fclose(f);
        j = open_ok(path);
        assert_int_equal(brt_journal_truncated_bytes(j), strlen(bad[k]));
        assert_int_equal(brt_journal_n_done(j), 1);
        assert_false(brt_journal_is_done(j, "b"));
        append_ok(j, "b", 1);
        brt_journal_close(j);
        assert_int_equal(check_file_valid(path), 2);
        /* drop "b" again for the next case */
        size_t len;
        char *text = read_file(path, &len);
        char *second = strchr(text, '\n') + 1;
        write_file(path, text, (size_t)(second - text));
        free(text);
    }
    unlink(path);
    free(path);
}

static void journal_refuses_corrupt_middle_line(void **state)
{
    (void)state;
    char *path = tmp_path();
    char *a = success_line("a"), *c = success_line("c");
    size_t la = strlen(a), lc = strlen(c);
    const char *mid = "{\"custom_id\":\"b\",\"resp\n";
    char *text = malloc(la + strlen(mid) + lc + 1);
    sprintf(text, "%s%s%s", a, mid, c);
    write_file(path, text, strlen(text));
    brt_journal *j = NULL;
    brt_err e;
    brt_err_clear(&e);
    assert_int_equal(brt_journal_open(path, &j, &e), BRT_ERR_FORMAT);
    assert_null(j);
    assert_non_null(strstr(e.msg, "line 2"));
    assert_non_null(strstr(e.msg, path));
    /* nothing was cut */
    size_t len;
    free(read_file(path, &len));
    assert_int_equal(len, strlen(text));
    free(text);

    /* the same id on two lines */
    text = malloc(2 * la + 1);
    sprintf(text, "%s%s", a, a);
    write_file(path, text, strlen(text));
    brt_err_clear(&e);
    assert_int_equal(brt_journal_open(path, &j, &e), BRT_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "line 2"));
    assert_non_null(strstr(e.msg, "line 1"));
    free(text);

    /* an input file given as the output: refused, and its (unterminated) last line kept */
    const char *input = "{\"custom_id\":\"x\",\"method\":\"POST\",\"url\":\"/v1/completions\","
                        "\"body\":{\"prompt\":\"p\"}}";
    write_file(path, input, strlen(input));
    brt_err_clear(&e);
    assert_int_equal(brt_journal_open(path, &j, &e), BRT_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "line 1"));
    free(read_file(path, &len));
    assert_int_equal(len, strlen(input));

    free(a);
    free(c);
    unlink(path);
    free(path);
}

static void journal_skips_blank_lines_and_rejects_non_files(void **state)
{
    (void)state;
    char *path = tmp_path();
    char *a = success_line("a");
    char *text = malloc(strlen(a) + 3);
    sprintf(text, "\n%s\n", a);
    write_file(path, text, strlen(text));
    brt_journal *j = open_ok(path);
    assert_int_equal(brt_journal_n_done(j), 1);
    assert_int_equal(brt_journal_truncated_bytes(j), 0);
    brt_journal_close(j);
    free(text);
    free(a);
    unlink(path);
    free(path);

    brt_err e;
    brt_err_clear(&e);
    assert_int_equal(brt_journal_open("/tmp", &j, &e) != BRT_OK, 1);
    assert_non_null(strstr(e.msg, "/tmp"));
    brt_err_clear(&e);
    assert_int_equal(brt_journal_open("/nonexistent/dir/out.jsonl", &j, &e), BRT_ERR_IO);
    assert_non_null(strstr(e.msg, "/nonexistent/dir/out.jsonl"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_fills_openai_defaults),
        cmocka_unit_test(parse_reads_every_field),
        cmocka_unit_test(parse_takes_token_id_prompt),
        cmocka_unit_test(parse_accepts_noop_values_of_unsupported_fields),
        cmocka_unit_test(parse_rejects_bad_lines_naming_line_and_field),
        cmocka_unit_test(read_keeps_going_past_bad_lines),
        cmocka_unit_test(read_handles_5mb_prompt),
        cmocka_unit_test(read_missing_file_is_io_error),
        cmocka_unit_test(format_success_without_logprobs_is_exact),
        cmocka_unit_test(format_success_with_logprobs_parses_back),
        cmocka_unit_test(format_success_replaces_invalid_utf8_text),
        cmocka_unit_test(format_error_is_exact),
        cmocka_unit_test(journal_fresh_append_reopen),
        cmocka_unit_test(journal_refuses_duplicate_and_malformed_appends),
        cmocka_unit_test(journal_reads_back_text_with_nul_byte),
        cmocka_unit_test(journal_cuts_torn_tail_without_newline),
        cmocka_unit_test(journal_cuts_invalid_last_line_with_newline),
        cmocka_unit_test(journal_refuses_corrupt_middle_line),
        cmocka_unit_test(journal_skips_blank_lines_and_rejects_non_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
